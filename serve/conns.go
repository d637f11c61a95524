package serve

import (
	"context"
	"net"
	"sync"
	"time"
)

// A connLimiter is a listener that keeps at most max connections open. A connection
// that arrives at the limit makes room by closing the oldest open one that is not busy
// with a generation (idle, or still sending its request: a slow client), or is closed
// itself when every open one is busy. Timeouts alone would let a crowd of slow clients
// hold every descriptor for as long as a timeout; this way they cannot keep /healthz,
// or anyone else, out.
type connLimiter struct {
	net.Listener
	max int

	mu               sync.Mutex
	open             map[*trackedConn]struct{}
	evicted, refused int64
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, open: make(map[*trackedConn]struct{})}
}

// trackedConn is a connection that a connLimiter counts.
type trackedConn struct {
	net.Conn
	l      *connLimiter
	opened time.Time
	busy   int // generations running on it (guarded by l.mu)
	once   sync.Once
}

// Close closes the connection and forgets it.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.open, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if len(l.open) >= l.max {
			var victim *trackedConn
			for o := range l.open {
				if o.busy == 0 && (victim == nil || o.opened.Before(victim.opened)) {
					victim = o
				}
			}
			if victim == nil {
				l.refused++
				l.mu.Unlock()
				c.Close()
				continue
			}
			// Its server goroutine sees the close on its next read or write and ends.
			delete(l.open, victim)
			l.evicted++
			victim.Conn.Close()
		}
		tc := &trackedConn{Conn: c, l: l, opened: time.Now()}
		l.open[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

func (l *connLimiter) stats() (open int, evicted, refused int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open), l.evicted, l.refused
}

type connKey struct{}

// withConn is http.Server's ConnContext: it gives each request its connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// markBusy marks the connection of a request's context as busy with a generation, so
// that it is not closed to make room, until the returned function is called.
func markBusy(ctx context.Context) (done func()) {
	c, ok := ctx.Value(connKey{}).(*trackedConn)
	if !ok {
		return func() {}
	}
	c.l.mu.Lock()
	c.busy++
	c.l.mu.Unlock()
	return func() {
		c.l.mu.Lock()
		c.busy--
		c.l.mu.Unlock()
	}
}
