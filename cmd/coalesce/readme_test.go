package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestReadmeCurlExamples runs every curl command of README.md's fenced sh
// blocks against a server started as `make run` starts it, with the
// host:port rewritten to the test's, and checks that each answers 2xx
// with JSON, or 4xx when the README shows an {"error": ...} answer, and
// that the answer matches the output shown in the comment below the
// command ("..." standing for any text). curl is not installed in CI, so
// the commands are read by a small shell-word reader and curl's flags are
// interpreted here.
func TestReadmeCurlExamples(t *testing.T) {
	md, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	examples := readmeExamples(string(md))
	// Counted independently of readmeExamples: lines of sh blocks that
	// run curl.
	inSh, curls := false, 0
	for _, l := range strings.Split(string(md), "\n") {
		switch l = strings.TrimSpace(l); {
		case strings.HasPrefix(l, "```"):
			inSh = l == "```sh"
		case inSh && regexp.MustCompile(`(^|[\s|])curl\s`).MatchString(l) && !strings.HasPrefix(l, "#"):
			curls++
		}
	}
	if len(examples) != curls || curls < 14 {
		t.Fatalf("found %d curl examples in README.md; want all %d (at least 14)", len(examples), curls)
	}
	s := startServer(t, "--models.default", "digits-mlp") // as make run does
	for _, ex := range examples {
		t.Run(fmt.Sprintf("line%d", ex.line), func(t *testing.T) {
			req, err := parseCurl(ex.script)
			if err != nil {
				t.Fatalf("README.md:%d: %v\n%s", ex.line, err, ex.script)
			}
			addr := map[string]string{"localhost:8080": s.addr, "localhost:9090": s.admin}[req.hostPort]
			if addr == "" {
				t.Fatalf("README.md:%d: host %q; want localhost:8080 or localhost:9090", ex.line, req.hostPort)
			}
			status, header, body := send(t, addr, req)
			wantErr := strings.HasPrefix(ex.want, `{"error"`)
			switch {
			case wantErr && (status < 400 || status > 499):
				t.Errorf("README.md:%d: status %d %s; want 4xx (the README shows an error)", ex.line, status, body)
			case !wantErr && (status < 200 || status > 299):
				t.Errorf("README.md:%d: status %d %s; want 2xx", ex.line, status, body)
			}
			if n := header.Peek("Inference-Header-Content-Length"); len(n) > 0 {
				checkBinary(t, ex, string(n), body)
				return
			}
			if !json.Valid(body) && !strings.Contains(req.path, "/metrics") {
				t.Errorf("README.md:%d: body %q is not JSON", ex.line, body)
			}
			if strings.HasPrefix(ex.want, "{") && !matchElided(ex.want, string(body)) {
				t.Errorf("README.md:%d: answer\n%s\ndoes not match the README's\n%s", ex.line, body, ex.want)
			}
		})
	}
}

// checkBinary checks a KServe V2 binary answer against the README's
// description: "Inference-Header-Content-Length: 144 ; ... then 8 bytes:
// int64 2".
func checkBinary(t *testing.T, ex readmeExample, hdrLen string, body []byte) {
	t.Helper()
	if m := regexp.MustCompile(`Inference-Header-Content-Length: (\d+)`).FindStringSubmatch(ex.want); m == nil || m[1] != hdrLen {
		t.Errorf("README.md:%d: Inference-Header-Content-Length %s; the README says %q", ex.line, hdrLen, ex.want)
	}
	n, _ := strconv.Atoi(hdrLen)
	if n > len(body) || !json.Valid(body[:n]) {
		t.Fatalf("README.md:%d: the first %d bytes of %q are not a JSON header", ex.line, n, body)
	}
	m := regexp.MustCompile(`(\d+) bytes: int64 (-?\d+)`).FindStringSubmatch(ex.want)
	if m == nil {
		t.Fatalf("README.md:%d: %q does not say what the binary data holds", ex.line, ex.want)
	}
	data := body[n:]
	if strconv.Itoa(len(data)) != m[1] || len(data) != 8 || strconv.FormatInt(int64(binary.LittleEndian.Uint64(data)), 10) != m[2] {
		t.Errorf("README.md:%d: binary data %x; the README says %s bytes holding int64 %s", ex.line, data, m[1], m[2])
	}
}

// matchElided reports whether got matches want, where "..." in want
// stands for any text.
func matchElided(want, got string) bool {
	parts := strings.Split(want, "...")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `.*?`) + `$`).MatchString(got)
}

func send(t *testing.T, addr string, c *curlRequest) (int, *fasthttp.ResponseHeader, []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + c.path)
	req.Header.SetMethod(c.method)
	for _, h := range c.headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if c.body != nil {
		req.SetBody(c.body)
	}
	if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h := &fasthttp.ResponseHeader{}
	resp.Header.CopyTo(h)
	return resp.StatusCode(), h, append([]byte(nil), resp.Body()...)
}

// readmeExample is one shell command of README.md that runs curl.
type readmeExample struct {
	line   int    // of its first line in README.md
	script string // the command, with any variable assignments before it in its block
	want   string // the comment lines right below it, without "# "
}

// readmeExamples returns the curl commands of md's fenced sh blocks. A
// command goes on over lines while a quote is open, a line ends in \ or |,
// or a { group is open; the "# ..." lines right below it are its expected
// output.
func readmeExamples(md string) []readmeExample {
	var out []readmeExample
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```sh" {
			continue
		}
		var prelude []string // assignments (hdr='...') used by later commands
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			if l := strings.TrimSpace(lines[i]); l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			start := i
			cmd := lines[i]
			for incomplete(cmd) && i+1 < len(lines) {
				i++
				cmd += "\n" + lines[i]
			}
			var want []string
			for i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "#") {
				i++
				want = append(want, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i]), "#")))
			}
			if regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(cmd) {
				prelude = append(prelude, cmd)
				continue
			}
			if !regexp.MustCompile(`(^|[\s|])curl\s`).MatchString(cmd) {
				continue
			}
			out = append(out, readmeExample{line: start + 1, script: strings.Join(append(append([]string(nil), prelude...), cmd), "\n"), want: strings.Join(want, "")})
		}
	}
	return out
}

// incomplete reports whether the shell text s needs another line: an open
// quote or { group, or a last line ending in \ or |.
func incomplete(s string) bool {
	var quote rune
	depth := 0
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			}
		case r == '\\':
			escaped = true
		case quote == '"':
			if r == '"' {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '{':
			depth++
		case r == '}':
			depth--
		}
	}
	t := strings.TrimRight(s, " \t")
	return quote != 0 || depth > 0 || strings.HasSuffix(t, "\\") || strings.HasSuffix(t, "|")
}

// token is a shell word or an operator (";", "|", "\n", "{", "}").
type token struct {
	text string
	op   bool
}

// shellTokens splits s into words as sh does for the forms the README
// uses: '...' literal, "..." with $name and ${#name} expanded from vars,
// \ escapes and line continuations, # comments.
func shellTokens(s string, vars map[string]string) ([]token, error) {
	var toks []token
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			w := cur.String()
			toks = append(toks, token{text: w, op: w == "{" || w == "}"})
			cur.Reset()
			inWord = false
		}
	}
	expand := func(s string, i int) (string, int, error) { // s[i] == '$'
		if m := regexp.MustCompile(`^\$\{#([A-Za-z_][A-Za-z0-9_]*)\}`).FindStringSubmatch(s[i:]); m != nil {
			v, ok := vars[m[1]]
			if !ok {
				return "", 0, fmt.Errorf("unset variable %s", m[1])
			}
			return strconv.Itoa(len(v)), i + len(m[0]), nil
		}
		if m := regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`).FindStringSubmatch(s[i:]); m != nil {
			v, ok := vars[m[1]]
			if !ok {
				return "", 0, fmt.Errorf("unset variable %s", m[1])
			}
			return v, i + len(m[0]), nil
		}
		return "$", i + 1, nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i += 2
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			inWord = true
			i += 2
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed '")
			}
			cur.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 2
		case c == '"':
			inWord = true
			for i++; ; {
				if i >= len(s) {
					return nil, fmt.Errorf("unclosed \"")
				}
				if s[i] == '"' {
					i++
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					cur.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '$' {
					v, j, err := expand(s, i)
					if err != nil {
						return nil, err
					}
					cur.WriteString(v)
					i = j
					continue
				}
				cur.WriteByte(s[i])
				i++
			}
		case c == '$':
			v, j, err := expand(s, i)
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			inWord = true
			i = j
		case c == '#' && !inWord:
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ';' || c == '|' || c == '\n':
			flush()
			toks = append(toks, token{text: string(c), op: true})
			i++
		case c == ' ' || c == '\t':
			flush()
			i++
		default:
			cur.WriteByte(c)
			inWord = true
			i++
		}
	}
	flush()
	return toks, nil
}

// curlRequest is what one curl command sends.
type curlRequest struct {
	method, hostPort, path string
	headers                []string
	body                   []byte // nil: none
}

// parseCurl interprets script: variable assignments, then one pipeline
// whose last command is curl, fed by printf commands (alone or in a
// { ...; } group).
func parseCurl(script string) (*curlRequest, error) {
	vars := map[string]string{}
	var stdin []byte
	var stmt []string
	var req *curlRequest
	run := func(words []string) error {
		switch {
		case len(words) == 0:
			return nil
		case len(words) == 1 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]):
			name, v, _ := strings.Cut(words[0], "=")
			vars[name] = v
			return nil
		case words[0] == "printf":
			out, err := printf(words[1:])
			stdin = append(stdin, out...)
			return err
		case words[0] == "curl":
			r, err := curlArgs(words[1:], stdin)
			req = r
			return err
		}
		return fmt.Errorf("unsupported command %q", words[0])
	}
	// Assignments must be known before later lines are tokenized, so each
	// line is tokenized as it is reached.
	rest := script
	for rest != "" {
		// Take the first complete command.
		chunk := ""
		for _, l := range strings.SplitAfter(rest, "\n") {
			chunk += l
			if !incomplete(strings.TrimSuffix(chunk, "\n")) {
				break
			}
		}
		rest = rest[len(chunk):]
		toks, err := shellTokens(chunk, vars)
		if err != nil {
			return nil, err
		}
		for _, tk := range toks {
			if !tk.op {
				stmt = append(stmt, tk.text)
				continue
			}
			if err := run(stmt); err != nil {
				return nil, err
			}
			stmt = nil
		}
		if err := run(stmt); err != nil {
			return nil, err
		}
		stmt = nil
	}
	if req == nil {
		return nil, fmt.Errorf("no curl command")
	}
	return req, nil
}

// printf implements the shell's printf for %s and the \xHH, \n, \t, \\
// escapes of its format.
func printf(args []string) ([]byte, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("printf without a format")
	}
	f, vals := args[0], args[1:]
	var out []byte
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == '\\' && i+3 < len(f) && f[i+1] == 'x':
			b, err := strconv.ParseUint(f[i+2:i+4], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("printf: bad escape %q", f[i:i+4])
			}
			out = append(out, byte(b))
			i += 3
		case f[i] == '\\' && i+1 < len(f):
			out = append(out, map[byte]byte{'n': '\n', 't': '\t', '\\': '\\'}[f[i+1]])
			i++
		case strings.HasPrefix(f[i:], "%s"):
			if len(vals) > 0 {
				out = append(out, vals[0]...)
				vals = vals[1:]
			}
			i++
		default:
			out = append(out, f[i])
		}
	}
	return out, nil
}

// curlArgs interprets curl's flags as the README uses them: -s, -X, -d
// (@file, @- for stdin; curl strips newlines from a -d file), --data-binary,
// -H, -D and -o (where the answer goes: the test keeps it).
func curlArgs(args []string, stdin []byte) (*curlRequest, error) {
	r := &curlRequest{}
	var url string
	data := func(v string, binary bool) error {
		var b []byte
		switch {
		case v == "@-":
			b = stdin
		case strings.HasPrefix(v, "@"):
			f, err := os.ReadFile(filepath.Join(repoRoot, v[1:]))
			if err != nil {
				return err
			}
			b = f
		default:
			b = []byte(v)
		}
		if !binary && strings.HasPrefix(v, "@") {
			b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r"), nil), []byte("\n"), nil)
		}
		r.body = append(r.body, b...)
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("curl %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var v string
		var err error
		switch a {
		case "-s", "--silent":
		case "-X", "--request":
			r.method, err = next()
		case "-d", "--data", "--data-binary":
			if v, err = next(); err == nil {
				err = data(v, a == "--data-binary")
			}
		case "-H", "--header":
			if v, err = next(); err == nil {
				r.headers = append(r.headers, v)
			}
		case "-D", "--dump-header", "-o", "--output":
			_, err = next()
		default:
			if strings.HasPrefix(a, "-") {
				return nil, fmt.Errorf("curl flag %s is not interpreted by this test", a)
			}
			url = a
		}
		if err != nil {
			return nil, err
		}
	}
	url = strings.TrimPrefix(url, "http://")
	host, path, ok := strings.Cut(url, "/")
	if url == "" || !ok {
		return nil, fmt.Errorf("curl without a URL host:port/path (%q)", url)
	}
	r.hostPort, r.path = host, "/"+path
	if r.method == "" {
		r.method = "GET"
		if r.body != nil {
			r.method = "POST"
		}
	}
	return r, nil
}
