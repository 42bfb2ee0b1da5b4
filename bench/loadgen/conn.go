package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Request is one prepared request. Build an HTTP/1.1 one with NewRequest;
// its wire bytes are serialised once, so sending it costs one write. A
// request for another Conn (Config.NewConn) carries what that Conn sends
// in Body (e.g. a marshalled gRPC message) and names its method in Path.
type Request struct {
	Method, Path string
	Body         []byte
	wire         []byte
}

// NewRequest returns a request for host with the given headers (name,
// value pairs). Content-Length is added for a non-nil body.
func NewRequest(method, host, path string, body []byte, headers ...string) Request {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: coalesce-bench\r\n", method, path, host)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return Request{Method: method, Path: path, Body: body, wire: b.Bytes()}
}

// conn is one client connection: a lean HTTP/1.1 client that writes a
// prepared request and reads just enough of the response to know its
// status and where it ends. It is not safe for concurrent use.
type conn struct {
	addr     string
	nc       net.Conn
	br       *bufio.Reader
	deadline time.Time // the connection's current I/O deadline
}

var errMalformed = errors.New("malformed HTTP response")

// do sends req and reads the whole response. It returns the status code
// and whether the connection must be closed afterwards. On any error the
// connection is closed and the next call redials.
//
// Moving a connection's deadline costs a timer update, so it is moved
// only when the wanted one is more than slack past it, and then to slack
// beyond the wanted one: a request's timeout is within ±slack of the
// wanted timeout.
func (c *conn) do(req *Request, deadline time.Time, slack time.Duration) (status int, err error) {
	if c.nc == nil {
		nc, err := net.DialTimeout("tcp", c.addr, time.Until(deadline))
		if err != nil {
			return 0, &DialError{Err: err}
		}
		c.nc = nc
		c.deadline = time.Time{}
		if c.br == nil {
			c.br = bufio.NewReaderSize(nc, 16<<10)
		} else {
			c.br.Reset(nc)
		}
	}
	if deadline.Sub(c.deadline) > slack {
		c.deadline = deadline.Add(slack)
		c.nc.SetDeadline(c.deadline)
	}
	if _, err := c.nc.Write(req.wire); err != nil {
		c.close()
		return 0, err
	}
	status, closeAfter, err := readResponse(c.br)
	if err != nil || closeAfter {
		c.close()
	}
	return status, err
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}

// DialError is a failure to connect: nothing was sent.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "dial: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// readResponse reads one response from br, discarding the body. It
// handles Content-Length, chunked encoding and bodies ended by EOF.
func readResponse(br *bufio.Reader) (status int, closeAfter bool, err error) {
	line, err := readLine(br)
	if err != nil {
		return 0, true, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, true, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, true, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	closeAfter = line[7] == '0' // HTTP/1.0 closes unless it says keep-alive
	length, chunked := -1, false
	for {
		h, err := readLine(br)
		if err != nil {
			return status, true, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return status, true, fmt.Errorf("%w: header %q", errMalformed, h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return status, true, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			v := bytes.ToLower(value)
			if bytes.Contains(v, []byte("close")) {
				closeAfter = true
			} else if bytes.Contains(v, []byte("keep-alive")) {
				closeAfter = false
			}
		}
	}
	switch {
	case status == 204 || status == 304 || status/100 == 1:
	case chunked:
		err = discardChunked(br)
	case length >= 0:
		_, err = br.Discard(length)
	default: // the body ends when the server closes the connection
		_, err = io.Copy(io.Discard, br)
		closeAfter = true
	}
	if err != nil {
		return status, true, err
	}
	return status, closeAfter, nil
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errMalformed, br.Size())
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		sz, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(sz)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 {
			for { // trailers, then the empty line
				l, err := readLine(br)
				if err != nil || len(l) == 0 {
					return err
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}
