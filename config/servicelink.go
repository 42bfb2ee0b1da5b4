package config

import (
	"net"
	"regexp"
	"strconv"
	"strings"
)

// serviceLinkName matches the variables Kubernetes injects into every pod
// for each Service in its namespace (enableServiceLinks, on by default):
// for a Service "coalesce" (or "coalesce-x", which becomes COALESCE_X_),
// COALESCE_SERVICE_HOST, COALESCE_SERVICE_PORT, COALESCE_SERVICE_PORT_<NAME>,
// COALESCE_PORT and COALESCE_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR].
// See https://kubernetes.io/docs/concepts/services-networking/service/#environment-variables
var serviceLinkName = regexp.MustCompile(`^COALESCE_(?:[A-Z0-9_]+?_)??(SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT|PORT_[0-9]+_(?:TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)$`)

// serviceLink reports whether the variable name=value is one of those
// Kubernetes service links rather than a mistyped configuration key. The
// value must have the link's shape too (an IP, a port, tcp://ip:port), so
// that COALESCE_HTTP_PORT=9000, a plausible mistake, is still refused.
func serviceLink(name, value string) bool {
	m := serviceLinkName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	kind, suffix := m[1], m[2]
	switch {
	case kind == "SERVICE_HOST" || suffix == "_ADDR":
		return net.ParseIP(value) != nil
	case strings.HasPrefix(kind, "SERVICE_PORT") || suffix == "_PORT":
		return isPort(value)
	case suffix == "_PROTO":
		return value == "tcp" || value == "udp" || value == "sctp"
	}
	// COALESCE_PORT and COALESCE_PORT_<port>_<PROTO>: proto://ip:port.
	proto, hostPort, ok := strings.Cut(value, "://")
	if !ok || (proto != "tcp" && proto != "udp" && proto != "sctp") {
		return false
	}
	host, port, err := net.SplitHostPort(hostPort)
	return err == nil && net.ParseIP(host) != nil && isPort(port)
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 1<<16
}
