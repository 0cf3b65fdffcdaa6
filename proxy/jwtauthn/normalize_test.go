package jwtauthn

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestNormalize checks normalize against a plain split of each claim on single spaces.
func TestNormalize(t *testing.T) {
	for _, s := range []string{"", " ", "  ", "a", "read write", " a  b ", "a b c d e f g h i j", "x\ty z", "é ü"} {
		got := &structpb.Struct{Fields: map[string]*structpb.Value{
			"scope": structpb.NewStringValue(s), "n": structpb.NewNumberValue(1), "other": structpb.NewStringValue(s),
		}}
		want := proto.Clone(got).(*structpb.Struct)
		var words []*structpb.Value
		for _, w := range strings.Split(s, " ") {
			if w != "" {
				words = append(words, structpb.NewStringValue(w))
			}
		}
		if len(words) > 0 {
			want.Fields["scope"] = structpb.NewListValue(&structpb.ListValue{Values: words})
		}
		normalize(got, []string{"scope", "n", "missing"})
		if !proto.Equal(got, want) {
			t.Errorf("normalize(%q) = %v, want %v", s, got, want)
		}
	}
}
