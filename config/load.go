package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

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

// leaf reports whether a field of type t is one key (a value) rather than
// a section of keys.
func leaf(t reflect.Type) bool {
	return t.Kind() != reflect.Struct || t == durationType
}

// fields lists the leaf keys of the struct type t, in declaration order.
// It serves the flag set, the help text and the defaults layer; values are
// decoded by decode alone.
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
			if !leaf(f.Type) {
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
		case f.typ == durationType:
			fs.Duration(f.key, time.Duration(v.Int()), help)
		case f.typ == byteSizeType:
			s := ByteSize(v.Int())
			fs.Var(&s, f.key, help)
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
	// origin names where each key set above the defaults came from, so
	// that an error names the file, variable or flag to fix.
	origin := map[string]string{}
	path, _ := fs.GetString("config")
	if _, err := os.Stat(path); err == nil || fs.Changed("config") {
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yamlParser{}); err != nil {
			return nil, fmt.Errorf("config: file %s: %w", path, err)
		}
		for _, key := range fk.Keys() {
			origin[key] = "file " + path
			// A section given a value ("limits: 3") would be replaced by
			// the flags' defaults below, hiding the mistake.
			if t := typeAt(reflect.TypeOf(Config{}), key); t != nil && !leaf(t) && fk.Get(key) != nil {
				return nil, keyError(key, origin, fmt.Errorf("%s is not a mapping; want %s", show(fk.Get(key)), want(t)))
			}
		}
		if err := k.Merge(fk); err != nil {
			return nil, fmt.Errorf("config: file %s: %w", path, err)
		}
	}
	if err := loadEnv(k, environ, origin); err != nil {
		return nil, err
	}
	// Passing k makes unset flags keep the values of earlier layers.
	flags := posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
		if f.Name == "config" {
			return "", nil // selects the file; not a configuration key
		}
		if f.Changed {
			origin[f.Name] = "flag --" + f.Name
		}
		return f.Name, posflag.FlagVal(fs, f)
	})
	if err := k.Load(flags, nil); err != nil {
		return nil, fmt.Errorf("config: flags: %w", err)
	}
	cfg := Default()
	if err := decode(k, &cfg, origin); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// loadEnv loads the COALESCE_* variables of environ into k, recording in
// origin which variable set which key. A variable that names no key is an
// error, except Kubernetes' service links (see serviceLink).
func loadEnv(k *koanf.Koanf, environ []string, origin map[string]string) error {
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
				if !serviceLink(name, v) {
					unknown = append(unknown, name)
				}
				return "", nil
			}
			origin[key] = "environment variable " + name
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

// toMap flattens c into dotted keys for the defaults layer.
func toMap(c any) map[string]any {
	rv := reflect.ValueOf(c)
	m := map[string]any{}
	for _, f := range fields(rv.Type()) {
		m[f.key] = rv.FieldByIndex(f.idx).Interface()
	}
	return m
}
