package grpcserver

import "time"

// SetKeepaliveTimeout shortens how long a keepalive ping may go
// unanswered, so that a test need not wait 20 seconds.
func (s *Server) SetKeepaliveTimeout(d time.Duration) { s.kaTimeout = d }
