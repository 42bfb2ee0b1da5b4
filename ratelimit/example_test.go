package ratelimit_test

import (
	"fmt"
	"time"

	"github.com/coalesce-ml/coalesce/ratelimit"
)

func Example() {
	now := time.Unix(0, 0)
	l := ratelimit.New(ratelimit.Config{
		Model: ratelimit.Rule{Rate: 100, Burst: 100},
		Now:   func() time.Time { return now }, // a fixed clock for the example
	})
	tier := ratelimit.Rule{Rate: 2, Burst: 2} // the key's tier: 2/s, 2 at once
	for i := range 3 {
		d := l.AllowKey("app-a", tier, "digits-mlp")
		fmt.Println(i, d.Allowed(), d.Scope, d.RetryAfter)
	}
	now = now.Add(500 * time.Millisecond)
	fmt.Println("after 500ms:", l.AllowKey("app-a", tier, "digits-mlp").Allowed())
	// Output:
	// 0 true  0s
	// 1 true  0s
	// 2 false key 500ms
	// after 500ms: true
}
