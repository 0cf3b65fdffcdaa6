package testenv

import (
	"testing"

	"golang.org/x/net/websocket"
)

// WebSocketEcho sends each message on ws and fails the test unless the same message comes back
// before the next is sent (the peer is an echo server).
func WebSocketEcho(t testing.TB, ws *websocket.Conn, msgs ...string) {
	t.Helper()
	for _, msg := range msgs {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
}
