package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// EnvPrefix prefixes every environment variable Coalesce reads.
const EnvPrefix = "COALESCE_"

// DefaultFile is the configuration file read when --config is not given.
// A missing default file is not an error; a missing named file is.
const DefaultFile = "configs/coalesce.yaml"

// field is one leaf key of a configuration struct.
type field struct {
	key  string // dotted koanf path
	help string
	typ  reflect.Type
	idx  []int // reflect field index path from the root struct
}

// fields lists the leaf keys of the struct type t, in declaration order.
func fields(t reflect.Type) []field {
	var out []field
	var walk func(t reflect.Type, prefix string, idx []int)
	walk = func(t reflect.Type, prefix string, idx []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			path := append(append([]int(nil), idx...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(f.Type, key+".", path)
				continue
			}
			out = append(out, field{key: key, help: f.Tag.Get("help"), typ: f.Type, idx: path})
		}
	}
	walk(t, "", nil)
	return out
}

// Keys returns every configuration key in declaration order.
func Keys() []string {
	fs := fields(reflect.TypeOf(Config{}))
	keys := make([]string, len(fs))
	for i, f := range fs {
		keys[i] = f.key
	}
	return keys
}

// EnvName returns the environment variable that sets key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Flags returns a flag set with one flag per configuration key (same dotted
// name, default from Default) plus --config. The caller parses it.
func Flags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.String("config", DefaultFile, "YAML configuration file (a missing default file is ignored)")
	def := reflect.ValueOf(Default())
	for _, f := range fields(reflect.TypeOf(Config{})) {
		v := def.FieldByIndex(f.idx)
		help := f.help + " (env " + EnvName(f.key) + ")"
		switch {
		case f.typ == reflect.TypeOf(time.Duration(0)):
			fs.Duration(f.key, time.Duration(v.Int()), help)
		case f.typ.Kind() == reflect.String:
			fs.String(f.key, v.String(), help)
		case f.typ.Kind() == reflect.Int:
			fs.Int(f.key, int(v.Int()), help)
		case f.typ.Kind() == reflect.Bool:
			fs.Bool(f.key, v.Bool(), help)
		case f.typ.Kind() == reflect.Float64:
			fs.Float64(f.key, v.Float(), help)
		default:
			panic("BUG: config: no flag type for " + f.key)
		}
	}
	return fs
}

// Load builds the configuration from defaults, the file named by --config
// (or DefaultFile when present), the environment (environ, usually
// os.Environ()) and the flags already parsed into fs, then validates it.
func Load(fs *pflag.FlagSet, environ []string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(toMap(Default()), "."), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}
	path, _ := fs.GetString("config")
	if _, err := os.Stat(path); err == nil || fs.Changed("config") {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("config: file %s: %w", path, err)
		}
		if err := checkKeys(k, "file "+path); err != nil {
			return nil, err
		}
	}
	if err := loadEnv(k, environ); err != nil {
		return nil, err
	}
	// Passing k makes unset flags keep the values of earlier layers.
	flags := posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
		if f.Name == "config" {
			return "", nil // selects the file; not a configuration key
		}
		return f.Name, posflag.FlagVal(fs, f)
	})
	if err := k.Load(flags, nil); err != nil {
		return nil, fmt.Errorf("config: flags: %w", err)
	}
	cfg := Default()
	if err := Decode(k, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func loadEnv(k *koanf.Koanf, environ []string) error {
	known := map[string]string{}
	for _, key := range Keys() {
		known[EnvName(key)] = key
	}
	var unknown []string
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, v string) (string, any) {
			key, ok := known[name]
			if !ok {
				unknown = append(unknown, name)
				return "", nil
			}
			return key, v
		},
	}), nil)
	if err != nil {
		return fmt.Errorf("config: environment: %w", err)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config: environment variable %s is not a configuration key; want one of %s...%s (see coalesce --help)",
			unknown[0], EnvName(Keys()[0]), EnvName(Keys()[len(Keys())-1]))
	}
	return nil
}

// checkKeys rejects keys that no field of Config has.
func checkKeys(k *koanf.Koanf, source string) error {
	known := map[string]bool{}
	sections := map[string]bool{}
	for _, key := range Keys() {
		known[key] = true
		if i := strings.IndexByte(key, '.'); i > 0 {
			sections[key[:i]] = true
		}
	}
	for _, key := range k.Keys() {
		if known[key] || (sections[key] && k.Get(key) == nil) {
			continue
		}
		section, _, _ := strings.Cut(key, ".")
		if sections[section] {
			var in []string
			for _, kk := range Keys() {
				if strings.HasPrefix(kk, section+".") {
					in = append(in, strings.TrimPrefix(kk, section+"."))
				}
			}
			return fmt.Errorf("config: %s: unknown key %q; want one of %s under %q", source, key, strings.Join(in, ", "), section)
		}
		var secs []string
		for s := range sections {
			secs = append(secs, s)
		}
		sort.Strings(secs)
		return fmt.Errorf("config: %s: unknown key %q; want a key under one of %s", source, key, strings.Join(secs, ", "))
	}
	return nil
}

// Decode copies the values of k into the struct pointed to by dst, one
// leaf key at a time, converting strings (from the environment and YAML)
// to the field's type. Keys absent from k leave the field unchanged; keys
// in k that dst has no field for are an error.
func Decode(k *koanf.Koanf, dst any) error {
	rv := reflect.ValueOf(dst).Elem()
	fs := fields(rv.Type())
	known := map[string]bool{}
	for _, f := range fs {
		known[f.key] = true
		for i := strings.IndexByte(f.key, '.'); i > 0; i = nextDot(f.key, i) {
			known[f.key[:i]] = true // an empty section ("http:" alone in YAML)
		}
		if !k.Exists(f.key) {
			continue
		}
		if err := setValue(rv.FieldByIndex(f.idx), k.Get(f.key)); err != nil {
			return fmt.Errorf("config: %s: %w", f.key, err)
		}
	}
	for _, key := range k.Keys() {
		if !known[key] {
			return fmt.Errorf("config: unknown key %q", key)
		}
	}
	return nil
}

func nextDot(s string, i int) int {
	if j := strings.IndexByte(s[i+1:], '.'); j >= 0 {
		return i + 1 + j
	}
	return -1
}

var errNil = errors.New("value is empty")

func setValue(v reflect.Value, raw any) error {
	if raw == nil {
		return errNil
	}
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		switch x := raw.(type) {
		case time.Duration:
			v.SetInt(int64(x))
		case string:
			d, err := time.ParseDuration(x)
			if err != nil {
				return fmt.Errorf("%q is not a duration; want a number with a unit, such as 500ms, 5s or 1m", x)
			}
			v.SetInt(int64(d))
		case int, int64, float64:
			return fmt.Errorf("%v has no unit; want a duration such as 500ms, 5s or 1m", x)
		default:
			return fmt.Errorf("%v is not a duration; want e.g. 5s", raw)
		}
	case v.Kind() == reflect.String:
		switch x := raw.(type) {
		case string:
			v.SetString(x)
		case int, int64, float64, bool:
			v.SetString(fmt.Sprint(x))
		default:
			return fmt.Errorf("%v is not a string", raw)
		}
	case v.Kind() == reflect.Int:
		switch x := raw.(type) {
		case int:
			v.SetInt(int64(x))
		case int64:
			v.SetInt(x)
		case float64:
			if x != float64(int64(x)) {
				return fmt.Errorf("%v is not a whole number; want an integer", x)
			}
			v.SetInt(int64(x))
		case string:
			n, err := strconv.Atoi(strings.TrimSpace(x))
			if err != nil {
				return fmt.Errorf("%q is not an integer; want a whole number", x)
			}
			v.SetInt(int64(n))
		default:
			return fmt.Errorf("%v is not an integer; want a whole number", raw)
		}
	case v.Kind() == reflect.Float64:
		switch x := raw.(type) {
		case float64:
			v.SetFloat(x)
		case int:
			v.SetFloat(float64(x))
		case int64:
			v.SetFloat(float64(x))
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return fmt.Errorf("%q is not a number", x)
			}
			v.SetFloat(f)
		default:
			return fmt.Errorf("%v is not a number", raw)
		}
	case v.Kind() == reflect.Bool:
		switch x := raw.(type) {
		case bool:
			v.SetBool(x)
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(x))
			if err != nil {
				return fmt.Errorf("%q is not a boolean; want true or false", x)
			}
			v.SetBool(b)
		default:
			return fmt.Errorf("%v is not a boolean; want true or false", raw)
		}
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Bool:
		p := reflect.New(v.Type().Elem())
		if err := setValue(p.Elem(), raw); err != nil {
			return err
		}
		v.Set(p)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		switch x := raw.(type) {
		case []any:
			out := make([]string, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("element %d (%v) is not a string; want a list of strings", i, e)
				}
				out[i] = s
			}
			v.Set(reflect.ValueOf(out))
		case []string:
			v.Set(reflect.ValueOf(append([]string(nil), x...)))
		case string:
			if x == "" {
				v.Set(reflect.ValueOf([]string{}))
			} else {
				v.Set(reflect.ValueOf(strings.Split(x, ",")))
			}
		default:
			return fmt.Errorf("%v is not a list of strings", raw)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Int64:
		x, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("%v is not a list; want a list of integers such as [30]", raw)
		}
		out := reflect.MakeSlice(v.Type(), len(x), len(x))
		for i, e := range x {
			if err := setValue(out.Index(i), e); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		v.Set(out)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		// A list of mappings (YAML), each decoded by the element's koanf
		// tags; an unknown key in an element is an error.
		x, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("%v is not a list; want a list of mappings", raw)
		}
		out := reflect.MakeSlice(v.Type(), len(x), len(x))
		for i, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return fmt.Errorf("element %d (%v) is not a mapping", i, e)
			}
			if err := setStruct(out.Index(i), m); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		v.Set(out)
	case v.Kind() == reflect.Int64:
		var n reflect.Value = reflect.New(reflect.TypeOf(0)).Elem()
		if err := setValue(n, raw); err != nil {
			return err
		}
		v.SetInt(n.Int())
	default:
		panic("BUG: config: unsupported field type " + v.Type().String())
	}
	return nil
}

// setStruct fills the fields of the struct v from m by their koanf tags.
func setStruct(v reflect.Value, m map[string]any) error {
	t := v.Type()
	var names []string
	known := map[string]int{}
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("koanf")
		known[tag] = i
		names = append(names, tag)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i, ok := known[k]
		if !ok {
			return fmt.Errorf("unknown key %q; want one of %s", k, strings.Join(names, ", "))
		}
		if err := setValue(v.Field(i), m[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// toMap flattens c into dotted keys for the defaults layer.
func toMap(c any) map[string]any {
	rv := reflect.ValueOf(c)
	m := map[string]any{}
	for _, f := range fields(rv.Type()) {
		m[f.key] = rv.FieldByIndex(f.idx).Interface()
	}
	return m
}
