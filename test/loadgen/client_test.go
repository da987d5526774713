package loadgen

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		status int
		keep   bool
		body   string // the part kept of a non-2xx body
		bad    bool
	}{
		{"empty 200", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, true, "", false},
		{"200 body not kept", "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"accepted\":1}", 200, true, "", false},
		{"429 with body", "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 6\r\n\r\nslow!\n", 429, true, "slow!\n", false},
		{"chunked", "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", 503, true, "hello0123456789", false},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, false, "", false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, false, "", false},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 200, true, "", false},
		{"100 then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, true, "", false},
		{"no length", "HTTP/1.1 502 Bad Gateway\r\n\r\nuntil close", 502, false, "until close", false},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", 204, true, "", false},
		{"long body kept in part", "HTTP/1.1 400 Bad Request\r\nContent-Length: 300\r\n\r\n" + strings.Repeat("x", 300), 400, true, strings.Repeat("x", answerSample), false},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n", 0, false, "", true},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, false, "", true},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false, "", true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A second answer behind a kept-alive first must be left unread.
			in := tt.in
			if tt.keep {
				in += "HTTP/1.1 418 I'm a teapot\r\n\r\n"
			}
			br := bufio.NewReader(strings.NewReader(in))
			var kept []byte
			status, keep, err := readResponse(br, &kept)
			if tt.bad {
				if err == nil {
					t.Fatalf("want an error, got status %d", status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.status || keep != tt.keep || string(kept) != tt.body {
				t.Fatalf("got status %d keep %v body %q, want %d %v %q", status, keep, kept, tt.status, tt.keep, tt.body)
			}
			if keep {
				if next, _, err := readResponse(br, nil); err != nil || next != 418 {
					t.Fatalf("the next answer: %d %v", next, err)
				}
			}
		})
	}
}
