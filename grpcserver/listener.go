package grpcserver

import (
	"net"
	"sync"
	"sync/atomic"
)

// capListener bounds the connections open on the gRPC port to max
// (http.max_connections): a connection beyond it is closed as soon as it
// is accepted, so that the client sees it fail at once (grpc-go reports
// Unavailable and reconnects with backoff) instead of hanging in the
// listen backlog as with netutil.LimitListener. Unlike HTTP/1.1 keep-alive
// connections, an HTTP/2 connection carries every call of its client, so
// none is closed to make room for a newcomer, as the data plane's table
// does with its longest-idle one: it may have calls in flight, and its
// client would only reconnect.
type capListener struct {
	net.Listener
	max  int64
	open atomic.Int64 // connections accepted and not yet closed
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &capConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		c.Close()
	}
}

// capConn gives its place back once, however often it is closed.
type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
