package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// ErrNoKey and ErrInvalidKey are what Store.Check returns for a request
// without a key and one whose key is not in the key file.
var (
	ErrNoKey      = errors.New("auth: no API key")
	ErrInvalidKey = errors.New("auth: invalid API key")
)

// Store is the set of valid keys of one key file. It is safe for
// concurrent use: Check reads the current set without locking; Reload
// builds a new set and swaps it in.
type Store struct {
	path string
	cur  atomic.Pointer[keySet]
	mu   sync.Mutex // serializes Reload
}

// Open reads the key file at path. It fails when the file cannot be read
// or is invalid; the error names the file and the line or entry, never a
// key.
func Open(path string) (*Store, error) {
	s := &Store{path: path}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the key file. When it cannot be read or is invalid,
// the keys in force stay and the error says why.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	ks, err := parse(b)
	clear(b)
	if err != nil {
		return fmt.Errorf("key file %s: %w", s.path, err)
	}
	s.cur.Store(ks)
	return nil
}

// Path returns the key file's path.
func (s *Store) Path() string { return s.path }

// Len returns the number of keys in force.
func (s *Store) Len() int { return s.cur.Load().n }

// Check returns the identity of key: ErrNoKey when key is empty,
// ErrInvalidKey when it is not in the file. key is only read.
func (s *Store) Check(key []byte) (*Identity, error) {
	if len(key) == 0 {
		return nil, ErrNoKey
	}
	d := sha256.Sum256(key)
	if id := s.cur.Load().lookup(&d); id != nil {
		return id, nil
	}
	return nil, ErrInvalidKey
}

// FromHeaders returns the key a request presents: the token of
// "Authorization: Bearer <key>" (RFC 6750 §2.1; the scheme is
// case-insensitive, RFC 9110 §11.1), else the X-API-Key header; nil when
// neither is present. authz and apiKey are the two headers' values; the
// result aliases them.
func FromHeaders(authz, apiKey []byte) []byte {
	const bearer = "bearer "
	if len(authz) > len(bearer) && asciiEqualFold(authz[:len(bearer)], bearer) {
		return trimSpace(authz[len(bearer):])
	}
	return trimSpace(apiKey)
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
