// Package h1 is strait-proxy's HTTP/1.1 codec: a server side that serves one downstream
// connection from one goroutine (ServeConn) and a client side that writes requests to pooled
// keep-alive upstream connections from the caller's goroutine (Pool). Both parse with
// proxy/http1's strict, allocation-free parsers (Envoy's rules: RFC 9112 without the
// leniencies request smuggling and response desync feed on), keep message heads in storage
// reused between requests (httpmsg.Request and httpmsg.Response), and stream bodies through
// per-connection buffers, so a keep-alive request costs no allocation in steady state.
//
// The codec owns framing: it writes Content-Length, Transfer-Encoding and the Connection
// close/keep-alive decision itself, from the body it is given, and ignores framing fields a
// handler or caller put in a Header. Hop-by-hop header handling beyond framing (Connection's
// other tokens, Keep-Alive, Proxy-Connection, TE, Upgrade) is the connection manager's.
package h1
