package grpcserver_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGrpcurl replays README.md's grpcurl commands (those of its fenced
// sh blocks) when grpcurl is installed (go install
// github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3), against the
// shipped models with localhost:8081 rewritten to the test's address,
// and compares each answer with the comment lines below the command,
// whitespace aside: the listing through reflection, the health check and
// ModelInfer, without the proto file.
func TestGrpcurl(t *testing.T) {
	md, err := os.ReadFile(filepath.Join("..", "README.md"))
	must(t, err)
	cmds := readmeGrpcurl(string(md))
	if len(cmds) < 4 {
		t.Fatalf("found %d grpcurl commands in README.md; want at least 4 (list, health, two ModelInfer)", len(cmds))
	}
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		t.Skip("grpcurl is not installed")
	}
	h := startShipped(t, shippedConfig())
	for _, c := range cmds {
		args, err := shellWords(c.cmd)
		if err != nil || len(args) < 2 || args[0] != "grpcurl" {
			t.Fatalf("README.md:%d: %q: %v; want a grpcurl command", c.line, c.cmd, err)
		}
		for i, a := range args {
			if a == "localhost:8081" {
				args[i] = h.addr
			}
		}
		out, err := exec.Command(bin, args[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("README.md:%d: grpcurl: %v\n%s", c.line, err, out)
			continue
		}
		if got, want := squeeze(string(out)), squeeze(c.want); got != want {
			t.Errorf("README.md:%d: grpcurl answered\n%s\nthe README shows\n%s", c.line, out, c.want)
		}
	}
}

type grpcurlExample struct {
	line      int
	cmd, want string
}

// readmeGrpcurl returns the grpcurl commands of md's sh blocks, each with
// the text of the comment lines right below it.
func readmeGrpcurl(md string) []grpcurlExample {
	var out []grpcurlExample
	inSh, below := false, false // below: the lines since the last grpcurl are comments
	for i, l := range strings.Split(md, "\n") {
		switch {
		case strings.HasPrefix(l, "```"):
			inSh, below = l == "```sh", false
		case inSh && strings.HasPrefix(l, "grpcurl "):
			out = append(out, grpcurlExample{line: i + 1, cmd: l})
			below = true
		case inSh && below && strings.HasPrefix(l, "# "):
			out[len(out)-1].want += l[2:] + "\n"
		default:
			below = false
		}
	}
	return out
}

// shellWords splits a command line into words: blanks separate them, and
// single quotes (no escapes inside, as in sh) keep text together.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errUnterminated
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in, quoted = true, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in, quoted = false, false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in || quoted {
		words = append(words, w.String())
	}
	return words, nil
}

var errUnterminated = errorString("unterminated single quote")

type errorString string

func (e errorString) Error() string { return string(e) }

// squeeze drops every blank, so that JSON printed on several lines
// compares with the README's one-line form.
func squeeze(s string) string {
	return strings.Join(strings.Fields(s), "")
}
