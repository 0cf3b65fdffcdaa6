package ecdstable

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	name    = "strait.test"
	typeURL = "type.strait.io/strait.test.v1.Table"
)

func TestEncodeDecode(t *testing.T) {
	v, err := structpb.NewStruct(map[string]any{"b": []any{"x", "y"}, "a": map[string]any{"c": "d", "e": "f"}})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := Encode(typeURL, v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(name, tc, name, typeURL)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, v) {
		t.Errorf("decoded %v, want %v", got, v)
	}
	// Equal values are equal bytes, whatever the maps' order.
	for i := 0; i < 20; i++ {
		again, err := Encode(typeURL, proto.Clone(v).(*structpb.Struct))
		if err != nil {
			t.Fatal(err)
		}
		if string(again.GetValue()) != string(tc.GetValue()) {
			t.Fatal("the encoding of equal values differs")
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := Encode(typeURL, &structpb.Struct{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Encode("type.strait.io/other", &structpb.Struct{})
	if err != nil {
		t.Fatal(err)
	}
	notTypedStruct, err := anypb.New(&structpb.Struct{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		typedConfig *anypb.Any
		want        string
	}{
		{"other", good, `resource name "other", want "strait.test"`},
		{name, other, `typed_config.type_url "type.strait.io/other", want "` + typeURL + `"`},
		{name, notTypedStruct, "typed_config: "},
		{name, nil, "typed_config: "},
	} {
		if _, err := Decode(tc.name, tc.typedConfig, name, typeURL); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s, %v): %v, want %q", tc.name, tc.typedConfig, err, tc.want)
		}
	}
}

func TestStringList(t *testing.T) {
	list := func(vs ...any) *structpb.Value {
		v, err := structpb.NewList(vs)
		if err != nil {
			t.Fatal(err)
		}
		return structpb.NewListValue(v)
	}
	if got, err := StringList(list("a", "bb"), 2, 2); err != nil || strings.Join(got, ",") != "a,bb" {
		t.Errorf("StringList: %v, %v", got, err)
	}
	if got, err := StringList(nil, 2, 2); err != nil || got != nil {
		t.Errorf("StringList(nil): %v, %v", got, err)
	}
	if got, err := StringList(list(strings.Repeat("x", 1000)), 1, 0); err != nil || len(got) != 1 {
		t.Errorf("StringList without a length limit: %v, %v", got, err)
	}
	for _, tc := range []struct {
		v    *structpb.Value
		want string
	}{
		{structpb.NewStringValue("a"), "want a list"},
		{list("a", "b", "c"), "3 items, at most 2"},
		{list("a", 1.0), "want strings"},
		{list("abc"), "3 bytes, at most 2"},
	} {
		if _, err := StringList(tc.v, 2, 2); err == nil || err.Error() != tc.want {
			t.Errorf("StringList(%v): %v, want %q", tc.v, err, tc.want)
		}
	}
	if v := StringValues([]string{"a", "b"}); !proto.Equal(v, list("a", "b")) {
		t.Errorf("StringValues: %v", v)
	}
}
