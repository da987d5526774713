package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

// The kinds of transport error a run counts.
const (
	ErrConnect = "connect"
	ErrWrite   = "write"
	ErrRead    = "read"
	ErrTimeout = "timeout"
)

// sendError is a request that got no complete answer.
type sendError struct {
	kind string
	err  error
}

func (e *sendError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// errorKind returns the kind of a transport error.
func errorKind(err error) string {
	if se, ok := errors.AsType[*sendError](err); ok {
		return se.kind
	}
	return ErrRead
}

// answerSample is how much of a non-2xx answer's body is kept to show.
const answerSample = 256

// poster sends one request and reads its whole answer. Safe for concurrent
// use; it keeps at most its number of connections open.
type poster interface {
	// post sends body with the given headers. The answer's body is
	// discarded, but up to answerSample bytes of it are appended to *keep
	// when keep is not nil and the status is not 2xx.
	post(ctx context.Context, hdrs []header, body []byte, keep *[]byte) (status int, err error)
	close()
}

// rawTransport is a minimal HTTP/1.1 client for http:// URLs: one request in
// flight per connection, the whole request written in one write, the answer
// parsed in place (status line, Content-Length, chunked or read-to-close
// body). It costs a fraction of net/http's CPU per request, which on a small
// machine is CPU the server under test keeps. Any error closes the
// connection; the next request on it dials again.
type rawTransport struct {
	addr, host, target string
	timeout            time.Duration
	pool               chan *rawConn
	all                []*rawConn
	stop               func() bool
}

type rawConn struct {
	mu   sync.Mutex // guards conn against interrupt
	conn net.Conn
	br   *bufio.Reader
	wbuf []byte
}

func newRawTransport(ctx context.Context, u *url.URL, conns int, timeout time.Duration) *rawTransport {
	host := u.Host
	addr := host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	t := &rawTransport{addr: addr, host: host, target: u.RequestURI(), timeout: timeout, pool: make(chan *rawConn, conns)}
	for range conns {
		c := &rawConn{}
		t.all = append(t.all, c)
		t.pool <- c
	}
	// A cancelled run interrupts the requests in flight at once.
	t.stop = context.AfterFunc(ctx, func() {
		for _, c := range t.all {
			c.mu.Lock()
			if c.conn != nil {
				_ = c.conn.SetDeadline(time.Unix(1, 0))
			}
			c.mu.Unlock()
		}
	})
	return t
}

func (t *rawTransport) close() {
	t.stop()
	for _, c := range t.all {
		c.mu.Lock()
		if c.conn != nil {
			_ = c.conn.Close()
			c.conn = nil
		}
		c.mu.Unlock()
	}
}

func (t *rawTransport) post(ctx context.Context, hdrs []header, body []byte, keep *[]byte) (int, error) {
	var c *rawConn
	select {
	case c = <-t.pool:
	case <-ctx.Done():
		return 0, &sendError{ErrConnect, ctx.Err()}
	}
	defer func() { t.pool <- c }()
	if c.conn == nil {
		d := net.Dialer{Timeout: t.timeout}
		conn, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return 0, &sendError{ErrConnect, err}
		}
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
		if ctx.Err() != nil { // cancelled while dialling: interrupt missed it
			_ = conn.SetDeadline(time.Unix(1, 0))
		}
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	w := append(c.wbuf[:0], "POST "...)
	w = append(w, t.target...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, t.host...)
	w = append(w, "\r\nUser-Agent: Mist-webhook\r\nContent-Type: application/json\r\n"...)
	for _, h := range hdrs {
		w = append(append(append(append(w, h.name...), ": "...), h.value...), "\r\n"...)
	}
	w = append(w, "Content-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)), 10)
	w = append(w, "\r\n\r\n"...)
	w = append(w, body...)
	c.wbuf = w
	_ = c.conn.SetDeadline(time.Now().Add(t.timeout))
	if ctx.Err() != nil { // cancelled: do not wait out the timeout
		_ = c.conn.SetDeadline(time.Unix(1, 0))
	}
	if _, err := c.conn.Write(w); err != nil {
		c.drop()
		return 0, &sendError{timeoutOr(err, ErrWrite), err}
	}
	status, keepAlive, err := readResponse(c.br, keep)
	if err != nil {
		c.drop()
		return 0, &sendError{timeoutOr(err, ErrRead), err}
	}
	if !keepAlive {
		c.drop()
	}
	return status, nil
}

func (c *rawConn) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

func timeoutOr(err error, kind string) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ErrTimeout
	}
	return kind
}

var errMalformed = errors.New("loadgen: malformed HTTP answer")

// readResponse reads one whole HTTP/1.x answer (skipping 1xx ones) and
// returns its status and whether the connection may carry another request.
func readResponse(br *bufio.Reader, keep *[]byte) (status int, keepAlive bool, err error) {
	for {
		status, keepAlive, err = readOne(br, keep)
		if err != nil || status >= 200 || status == 101 {
			return status, keepAlive, err
		}
	}
}

func readOne(br *bufio.Reader, keep *[]byte) (int, bool, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, unexpectedEOF(err)
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, errMalformed
	}
	status := 0
	for _, ch := range line[9:12] {
		if ch < '0' || ch > '9' {
			return 0, false, errMalformed
		}
		status = status*10 + int(ch-'0')
	}
	keepAlive := line[7] != '0' // HTTP/1.0 closes unless it says keep-alive
	length := int64(-1)
	chunked := false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, unexpectedEOF(err)
		}
		h := bytes.TrimRight(line, "\r\n")
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			return 0, false, errMalformed
		}
		name, value := h[:colon], bytes.TrimSpace(h[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return 0, false, errMalformed
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keepAlive = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				keepAlive = true
			}
		}
	}
	var sink io.Writer = io.Discard
	if keep != nil && (status < 200 || status > 299) {
		sink = &capWriter{b: keep, room: answerSample}
	}
	switch {
	case status < 200 || status == 204 || status == 304:
	case chunked:
		if err := readChunked(br, sink); err != nil {
			return 0, false, err
		}
	case length >= 0:
		if _, err := io.CopyN(sink, br, length); err != nil {
			return 0, false, unexpectedEOF(err)
		}
	default: // no length: the body runs to the end of the connection
		if _, err := io.Copy(sink, br); err != nil {
			return 0, false, err
		}
		keepAlive = false
	}
	return status, keepAlive, nil
}

func readChunked(br *bufio.Reader, sink io.Writer) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return unexpectedEOF(err)
		}
		size := bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexAny(size, "; \t"); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 {
			return errMalformed
		}
		if n == 0 { // trailers, up to an empty line
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return unexpectedEOF(err)
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := io.CopyN(sink, br, n); err != nil {
			return unexpectedEOF(err)
		}
		if line, err = br.ReadSlice('\n'); err != nil {
			return unexpectedEOF(err)
		} else if len(bytes.TrimRight(line, "\r\n")) != 0 {
			return errMalformed
		}
	}
}

// capWriter keeps the first room bytes written to it and drops the rest.
type capWriter struct {
	b    *[]byte
	room int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if n := min(len(p), w.room); n > 0 {
		*w.b = append(*w.b, p[:n]...)
		w.room -= n
	}
	return len(p), nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// httpTransport sends through net/http: for https:// URLs (and as a
// cross-check of the raw client), with as many connections as asked, all
// kept alive, no compression.
type httpTransport struct {
	cl  *http.Client
	url string
}

func newHTTPTransport(u *url.URL, conns int, timeout time.Duration, insecure bool) *httpTransport {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: timeout,
		ForceAttemptHTTP2:   false,
	}
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with -insecure, for test deployments
	}
	return &httpTransport{cl: &http.Client{Transport: tr, Timeout: timeout}, url: u.String()}
}

func (t *httpTransport) close() { t.cl.CloseIdleConnections() }

func (t *httpTransport) post(ctx context.Context, hdrs []header, body []byte, keep *[]byte) (int, error) {
	// net/http may still read a request body after Do returns (an early
	// answer), so it gets its own copy: the caller reuses body.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(bytes.Clone(body)))
	if err != nil {
		return 0, &sendError{ErrWrite, err}
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["User-Agent"] = []string{"Mist-webhook"}
	for _, h := range hdrs {
		req.Header[h.name] = append(req.Header[h.name], string(h.value))
	}
	resp, err := t.cl.Do(req)
	if err != nil {
		kind := ErrRead
		if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "dial" {
			kind = ErrConnect
		}
		return 0, &sendError{timeoutOr(err, kind), err}
	}
	defer resp.Body.Close()
	var sink io.Writer = io.Discard
	if keep != nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		sink = &capWriter{b: keep, room: answerSample}
	}
	if _, err := io.Copy(sink, resp.Body); err != nil {
		return 0, &sendError{timeoutOr(err, ErrRead), err}
	}
	return resp.StatusCode, nil
}

// newPoster picks the client for u: "raw" (the default for http://) or
// "http" (net/http; the only one for https://).
func newPoster(ctx context.Context, u *url.URL, client string, conns int, timeout time.Duration, insecure bool) (poster, error) {
	switch {
	case client == "http" || (client == "" && u.Scheme == "https"):
		return newHTTPTransport(u, conns, timeout, insecure), nil
	case client == "raw" || client == "":
		if u.Scheme != "http" {
			return nil, fmt.Errorf("loadgen: the raw client speaks http:// only, not %s:// (use the http client)", u.Scheme)
		}
		return newRawTransport(ctx, u, conns, timeout), nil
	default:
		return nil, fmt.Errorf("loadgen: client %q: want raw or http", client)
	}
}
