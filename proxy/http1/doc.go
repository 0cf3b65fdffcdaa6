// Package http1 validates HTTP/1.1 request framing as strictly as Envoy's codec (balsa with
// Envoy's validation policy, and http-parser before it), so that every byte the proxy hands to
// an HTTP/1.1 server has one meaning only: request smuggling needs two parsers that disagree
// about where a request ends, and this package refuses every message on which RFC 9112
// parsers may disagree.
//
// It has three parts:
//
//   - Parser, a streaming, allocation-free parser of a request head (request line and header
//     fields) that reports the body framing (none, Content-Length N, chunked) and whether the
//     request switches protocols (Upgrade, CONNECT). It can keep the parsed method, target and
//     fields in storage reused between requests, so a future HTTP/1.1 codec can use it as is.
//   - Chunked, a streaming validator (and decoder) of a chunked body including its trailers.
//   - GuardConn, a net.Conn wrapper placed between an accepted downstream connection and
//     net/http's server. It parses every byte net/http will read and only ever delivers bytes
//     that validated; a request that fails is replaced by a short "poison" request that makes
//     net/http itself answer 400, 431 or 501 and close the connection, as Envoy does.
//
// Rejections carry the status Envoy answers with and Envoy's response code details string
// (http1.codec_error, http1.content_length_and_chunked_not_allowed,
// http1.invalid_transfer_encoding, ...); see Error.
package http1
