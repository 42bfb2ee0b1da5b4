package xgboost

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkRead reads the largest testdata model, and the same trees
// repeated 100 times (2.2 MB).
func BenchmarkRead(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "binary_logistic.model.json"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"binary_logistic", data},
		{"binary_logistic_x100", repeatTrees(b, data, 100)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Read(bc.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// repeatTrees returns a gbtree model whose trees are those of data, k
// times over.
func repeatTrees(tb testing.TB, data []byte, k int) []byte {
	s := regexp.MustCompile(`"id":\d+,`).ReplaceAllString(string(data), "")
	i := strings.Index(s, `"trees":[`) + len(`"trees":[`)
	j := strings.Index(s, `]},"name":"gbtree"}`)
	info := regexp.MustCompile(`"tree_info":\[([^\]]*)\]`).FindStringSubmatch(s)
	num := regexp.MustCompile(`"num_trees":"(\d+)"`).FindStringSubmatch(s)
	if i < len(`"trees":[`) || j < i || info == nil || num == nil {
		tb.Fatal("unexpected model layout")
	}
	n, _ := strconv.Atoi(num[1])
	trees := strings.TrimSuffix(strings.Repeat(s[i:j]+",", k), ",")
	s = s[:i] + trees + s[j:]
	s = strings.Replace(s, info[0], `"tree_info":[`+strings.TrimSuffix(strings.Repeat(info[1]+",", k), ",")+`]`, 1)
	s = strings.Replace(s, num[0], `"num_trees":"`+strconv.Itoa(n*k)+`"`, 1)
	if _, err := Read([]byte(s)); err != nil {
		tb.Fatal(err)
	}
	return []byte(s)
}
