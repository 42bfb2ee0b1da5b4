package auth_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/coalesce-ml/coalesce/auth"
)

func Example() {
	dir, _ := os.MkdirTemp("", "keys")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keys.yaml")
	_ = os.WriteFile(path, []byte(`tiers:
  gold: {rate: 100, burst: 200}
keys:
  - {name: app-a, key: sk-0123456789abcdef, models: [digits-mlp], tier: gold}
`), 0o600)
	keys, err := auth.Open(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	id, err := keys.Check(auth.FromHeaders([]byte("Bearer sk-0123456789abcdef"), nil))
	fmt.Println(id.Name, id.Tier, id.Rule, id.Allows("digits-mlp"), id.Allows("iris-logreg"), err)
	_, err = keys.Check([]byte("sk-guess"))
	fmt.Println(err)
	// Output:
	// app-a gold {100 200} true false <nil>
	// auth: invalid API key
}
