package config

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	kyaml "github.com/knadh/koanf/parsers/yaml"
)

// yamlParser is koanf's YAML parser with errors that give the right line.
//
// go.yaml.in/yaml/v3 (decode.go, parser.fail) reports a parser error at
// the 0-based line of the collection it was parsing, so one line too
// early, and gives no line at all when that is the first line; only
// scanner errors carry a correct line. Rather than guess which kind an
// error is from its text, yamlParser finds the first line at which the
// document's error appears: the shortest prefix of the file that fails
// with the same problem. A document is parsed in order, so the problem is
// on that line (an unclosed bracket is reported where the file stops
// making sense). Unmarshal errors ("yaml: unmarshal errors:", such as a
// repeated key) already carry correct lines and are put on one line.
type yamlParser struct{}

var yamlLine = regexp.MustCompile(`^yaml: (?:line \d+: )?`)

// Unmarshal parses b as a YAML mapping.
func (yamlParser) Unmarshal(b []byte) (map[string]any, error) {
	m, err := kyaml.Parser().Unmarshal(b)
	if err == nil {
		return m, nil
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "yaml: unmarshal errors:"); ok {
		return nil, fmt.Errorf("yaml: %s", strings.Join(strings.Fields(rest), " "))
	}
	loc := yamlLine.FindString(msg)
	if loc == "" {
		return nil, err
	}
	problem := msg[len(loc):]
	lines := bytes.SplitAfter(b, []byte("\n"))
	for n := 1; n <= len(lines); n++ {
		_, perr := kyaml.Parser().Unmarshal(bytes.Join(lines[:n], nil))
		if perr == nil {
			continue
		}
		if pmsg := perr.Error(); pmsg[len(yamlLine.FindString(pmsg)):] == problem {
			return nil, fmt.Errorf("yaml: line %d: %s", n, problem)
		}
	}
	return nil, err
}

// Marshal renders o as YAML.
func (yamlParser) Marshal(o map[string]any) ([]byte, error) {
	return kyaml.Parser().Marshal(o)
}
