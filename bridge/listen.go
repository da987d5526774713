package bridge

import (
	"net"
	"sync"
)

// perIPListener closes, at once, a connection whose client address
// already has max connections open, so one source cannot take every slot
// of the connection cap (slow senders, a flood of idle connections).
// Connections it hands out give their slot back when closed.
type perIPListener struct {
	net.Listener
	max    int
	onDrop func()
	mu     sync.Mutex
	conns  map[string]int
}

func newPerIPListener(ln net.Listener, max int, onDrop func()) *perIPListener {
	return &perIPListener{Listener: ln, max: max, onDrop: onDrop, conns: make(map[string]int)}
}

// Accept returns the next connection whose address is under the cap.
func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := hostOf(c.RemoteAddr())
		l.mu.Lock()
		n := l.conns[host]
		ok := n < l.max
		if ok {
			l.conns[host] = n + 1
		}
		l.mu.Unlock()
		if !ok {
			_ = c.Close()
			if l.onDrop != nil {
				l.onDrop()
			}
			continue
		}
		return &perIPConn{Conn: c, l: l, host: host}, nil
	}
}

func (l *perIPListener) release(host string) {
	l.mu.Lock()
	if n := l.conns[host] - 1; n > 0 {
		l.conns[host] = n
	} else {
		delete(l.conns, host)
	}
	l.mu.Unlock()
}

type perIPConn struct {
	net.Conn
	l    *perIPListener
	host string
	once sync.Once
}

func (c *perIPConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.host) })
	return err
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
