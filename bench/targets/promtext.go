package targets

import (
	"errors"
	"strings"
)

// The series syntax of the Prometheus text format 0.0.4:
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

// label is one label pair of a series, its value unescaped.
type label struct{ name, value string }

// parseSeries splits a sample line, or a key of Metrics.Values, into the
// metric name, its labels and what follows them (the value and timestamp
// of a sample line). Label values may hold any character, commas and
// braces included; \\, \" and \n are unescaped.
func parseSeries(s string) (name string, labels []label, rest string, err error) {
	i := 0
	for i < len(s) && isNameChar(s[i], i == 0) {
		i++
	}
	if i == 0 {
		return "", nil, "", errors.New("no metric name")
	}
	name, s = s[:i], s[i:]
	if s == "" || s[0] != '{' {
		return name, nil, s, nil
	}
	s = s[1:]
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return "", nil, "", errors.New("unterminated label set")
		}
		if s[0] == '}' {
			return name, labels, s[1:], nil
		}
		j := 0
		for j < len(s) && isNameChar(s[j], j == 0) && s[j] != ':' {
			j++
		}
		if j == 0 {
			return "", nil, "", errors.New("bad label name")
		}
		l := label{name: s[:j]}
		s = strings.TrimLeft(s[j:], " \t")
		if !strings.HasPrefix(s, `="`) && !strings.HasPrefix(s, `= "`) {
			return "", nil, "", errors.New(`label ` + l.name + `: want ="value"`)
		}
		s = s[strings.IndexByte(s, '"')+1:]
		var ok bool
		if l.value, s, ok = unquote(s); !ok {
			return "", nil, "", errors.New("label " + l.name + ": unterminated value")
		}
		labels = append(labels, l)
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "}") {
			return "", nil, "", errors.New("label " + l.name + ": want ',' or '}' after the value")
		}
	}
}

// unquote reads a label value up to its closing quote, which it consumes.
// An unknown escape keeps its backslash.
func unquote(s string) (value, rest string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case '\\', '"':
				b.WriteByte(s[i])
			default:
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// seriesKey writes a series in the canonical form Metrics.Values uses.
func seriesKey(name string, labels []label) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.name)
		b.WriteString(`="`)
		for j := 0; j < len(l.value); j++ {
			switch c := l.value[j]; c {
			case '\\', '"':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}
