package grpcserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Every call the fast path does not take is served by grpc-go's server
// through its http.Handler (grpc.Server.ServeHTTP): the stream becomes an
// http.Request whose body is a pipe the reading goroutine fills, and a
// slowStream is its http.ResponseWriter, writing HEADERS, DATA and the
// trailers grpc-go declares, as golang.org/x/net/http2's server would.

var (
	errReset      = errors.New("grpcserver: stream reset")
	errBodyClosed = errors.New("grpcserver: request body closed")
)

// slowStream is one call of grpc-go's path: its request body and its
// response writer.
type slowStream struct {
	st     *stream
	body   pipe
	cancel context.CancelFunc

	// Used by grpc-go's goroutines, one at a time.
	hdr         http.Header
	wroteHeader bool
	trailers    []string // the names the Trailer header declared
}

// startSlow hands st to grpc-go.
func (c *conn) startSlow(st *stream, f *http2.MetaHeadersFrame, h *headerInfo) {
	ctx, cancel := context.WithCancel(context.WithValue(c.s.ctx, http.LocalAddrContextKey, c.nc.LocalAddr()))
	ss := &slowStream{st: st, cancel: cancel, hdr: make(http.Header)}
	ss.body.init(c, st.id)
	u, err := url.ParseRequestURI(h.path)
	if err != nil {
		u = &url.URL{Path: h.path}
	}
	r := &http.Request{Method: h.method, URL: u, RequestURI: h.path, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: make(http.Header), Body: &ss.body, ContentLength: -1, Host: h.authority, RemoteAddr: c.remote, TLS: c.tls}
	for _, hf := range f.RegularFields() {
		r.Header.Add(hf.Name, hf.Value)
	}
	st.slow = ss
	go ss.serve(r.WithContext(ctx))
}

func (ss *slowStream) serve(r *http.Request) {
	defer ss.st.c.remove(ss.st)
	defer ss.cancel()
	ss.st.c.s.gs.ServeHTTP(ss, r)
	ss.finish()
}

// abort ends the call: its body reads fail with err and its context is
// cancelled, which grpc-go's handler transport takes as the call's end.
func (ss *slowStream) abort(err error) {
	ss.body.close(err)
	ss.cancel()
}

func (ss *slowStream) Header() http.Header { return ss.hdr }

func (ss *slowStream) WriteHeader(code int) {
	if ss.wroteHeader {
		return
	}
	ss.wroteHeader = true
	fields := []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(code)}}
	for k, vs := range ss.hdr {
		switch {
		case k == "Trailer":
			for _, v := range vs {
				for name := range strings.SplitSeq(v, ",") {
					if name = strings.TrimSpace(name); name != "" {
						ss.trailers = append(ss.trailers, http.CanonicalHeaderKey(name))
					}
				}
			}
		case strings.HasPrefix(k, http.TrailerPrefix):
		default:
			fields = appendFields(fields, k, vs)
		}
	}
	c := ss.st.c
	if ss.st.reset.Load() {
		return
	}
	c.wmu.Lock()
	c.wrote.Store(true)
	_ = c.writeHeaders(ss.st.id, false, fields)
	c.wmu.Unlock()
}

// Write sends p as DATA, as the client's windows allow.
func (ss *slowStream) Write(p []byte) (int, error) {
	if !ss.wroteHeader {
		ss.WriteHeader(http.StatusOK)
	}
	c, n := ss.st.c, 0
	for len(p) > 0 {
		k := c.take(ss.st, min(len(p), int(c.maxFrameSize())))
		if k == 0 {
			return n, errConnClosed
		}
		c.wmu.Lock()
		c.wrote.Store(true)
		err := c.fr.WriteData(ss.st.id, false, p[:k])
		c.wmu.Unlock()
		if err != nil {
			return n, err
		}
		p, n = p[k:], n+k
	}
	return n, nil
}

func (ss *slowStream) Flush() {
	if !ss.wroteHeader {
		ss.WriteHeader(http.StatusOK)
	}
	c := ss.st.c
	c.wmu.Lock()
	_ = c.bw.Flush()
	c.wmu.Unlock()
}

// finish ends the response: the trailers grpc-go declared or set under
// http.TrailerPrefix, else an empty DATA frame, with END_STREAM; then a
// RST_STREAM(NO_ERROR) if the client is still sending, so that it stops.
func (ss *slowStream) finish() {
	if !ss.wroteHeader {
		ss.WriteHeader(http.StatusOK)
	}
	var fields []hpack.HeaderField
	for _, k := range ss.trailers {
		fields = appendFields(fields, k, ss.hdr[k])
	}
	for k, vs := range ss.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			fields = appendFields(fields, name, vs)
		}
	}
	c := ss.st.c
	if ss.st.reset.Load() {
		return
	}
	c.wmu.Lock()
	c.wrote.Store(true)
	if len(fields) > 0 {
		_ = c.writeHeaders(ss.st.id, true, fields)
	} else {
		_ = c.fr.WriteData(ss.st.id, true, nil)
	}
	if !ss.body.ended() {
		_ = c.fr.WriteRSTStream(ss.st.id, http2.ErrCodeNo)
	}
	_ = c.bw.Flush()
	c.wmu.Unlock()
}

// appendFields appends header name's values, the name lowercased as
// HTTP/2 wants it.
func appendFields(fields []hpack.HeaderField, name string, vs []string) []hpack.HeaderField {
	name = strings.ToLower(name)
	for _, v := range vs {
		fields = append(fields, hpack.HeaderField{Name: name, Value: v})
	}
	return fields
}

// maxFrameSize is the client's SETTINGS_MAX_FRAME_SIZE.
func (c *conn) maxFrameSize() uint32 {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.maxFrame
}

// pipe is a request body: the reading goroutine writes the DATA it
// receives, grpc-go reads it, and what it reads is granted back to the
// client's stream window. It holds at most streamWindow bytes.
type pipe struct {
	c    *conn
	id   uint32
	mu   sync.Mutex
	cond sync.Cond
	buf  bytes.Buffer
	err  error // io.EOF once the client half-closed
}

func (p *pipe) init(c *conn, id uint32) {
	p.c, p.id = c, id
	p.cond.L = &p.mu
}

// write adds data; false means the client sent more than its window.
func (p *pipe) write(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return true // the call ended: the data is dropped
	}
	if p.buf.Len()+len(b) > streamWindow {
		return false
	}
	p.buf.Write(b)
	p.cond.Broadcast()
	return true
}

func (p *pipe) close(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// ended says whether the client half-closed the stream.
func (p *pipe) ended() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err == io.EOF
}

func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	for p.buf.Len() == 0 && p.err == nil {
		p.cond.Wait()
	}
	if p.buf.Len() == 0 {
		err := p.err
		p.mu.Unlock()
		return 0, err
	}
	n, _ := p.buf.Read(b)
	open := p.err == nil
	p.mu.Unlock()
	if open && n > 0 {
		_ = p.c.writeWindowUpdate(p.id, uint32(n))
	}
	return n, nil
}

func (p *pipe) Close() error {
	p.close(errBodyClosed)
	return nil
}
