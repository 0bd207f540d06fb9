// Package xlcfg reads xl.cfg files in the syntax of Xen's libxlu: settings
// `key = value` or `key += value`, ended by a newline or `;`; values are
// strings ('...' or "..." with libxlu's backslash escapes), numbers
// (decimal, 0-octal, 0x-hex) or lists `[ ... ]`, which may nest, span
// lines and end in a comma; `#` starts a comment. As in libxlu a later
// setting of a key replaces an earlier one, and `+=` appends to a list or
// concatenates to a string.
//
// Every error carries the file, line and column, so that a user can go
// straight to the mistake.
package xlcfg

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is a 1-based line and column (in bytes) within one source.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Error is a syntax or value error at one position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errorf makes an *Error at pos; the config model uses it for bad values
// so that they are reported the same way as syntax errors.
func Errorf(pos Pos, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// Kind says what a Value holds.
type Kind int

const (
	String Kind = iota
	Number
	List
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Number:
		return "number"
	}
	return "list"
}

// Value is one parsed value. A Number keeps its source text in Text (as
// libxlu does) and its value in Int; a String keeps its unquoted text.
type Value struct {
	Kind  Kind
	Text  string
	Int   int64
	Items []*Value
	Pos   Pos
}

// Setting is the final value of one key, after every `=` and `+=`.
type Setting struct {
	Name  string
	Value *Value
	Pos   Pos // where the key was last set
}

// Config is the result of one or more Parse calls, in the order given.
type Config struct {
	settings map[string]*Setting
	order    []string
}

// New returns an empty Config.
func New() *Config { return &Config{settings: map[string]*Setting{}} }

// Parse reads one file into a new Config.
func Parse(file string, src []byte) (*Config, error) {
	c := New()
	if err := c.Parse(file, src); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse reads src (named file in errors) and applies its settings on top
// of what c already holds. On error c is unchanged.
func (c *Config) Parse(file string, src []byte) error {
	p := &parser{lx: lexer{file: file, src: src, line: 1, col: 1}}
	sets, err := p.file()
	if err != nil {
		return err
	}
	// Apply to a copy so that a failing += leaves c as it was.
	next := c.clone()
	for _, s := range sets {
		if err := next.apply(s); err != nil {
			return err
		}
	}
	*c = *next
	return nil
}

func (c *Config) clone() *Config {
	n := &Config{settings: make(map[string]*Setting, len(c.settings)), order: append([]string(nil), c.order...)}
	for k, v := range c.settings {
		s := *v
		n.settings[k] = &s
	}
	return n
}

type stmt struct {
	name   string
	pos    Pos
	append bool
	value  *Value
}

func (c *Config) apply(s stmt) error {
	prev, ok := c.settings[s.name]
	if !ok {
		c.order = append(c.order, s.name)
		c.settings[s.name] = &Setting{Name: s.name, Value: s.value, Pos: s.pos}
		return nil
	}
	if !s.append {
		prev.Value, prev.Pos = s.value, s.pos
		return nil
	}
	// libxlu: += on a list appends the items, on a string concatenates;
	// a number is a string to libxlu, so it concatenates too.
	old, add := prev.Value, s.value
	switch {
	case old.Kind == List && add.Kind == List:
		items := append(append([]*Value(nil), old.Items...), add.Items...)
		prev.Value = &Value{Kind: List, Items: items, Pos: old.Pos}
	case old.Kind != List && add.Kind != List:
		prev.Value = &Value{Kind: String, Text: old.Text + add.Text, Pos: old.Pos}
	default:
		return Errorf(s.value.Pos, "%s += %s: %s was set to a %s at %s; += must add the same kind", s.name, add.Kind, s.name, old.Kind, prev.Pos)
	}
	prev.Pos = s.pos
	return nil
}

// Get returns the setting of key, or nil.
func (c *Config) Get(key string) *Setting { return c.settings[key] }

// Keys returns the keys in the order they were first set.
func (c *Config) Keys() []string { return append([]string(nil), c.order...) }

// SortedKeys returns the keys sorted, for stable output.
func (c *Config) SortedKeys() []string {
	k := c.Keys()
	sort.Strings(k)
	return k
}

// String renders a value back in xl.cfg syntax.
func (v *Value) String() string {
	switch v.Kind {
	case Number:
		return v.Text
	case String:
		return quote(v.Text)
	}
	parts := make([]string, len(v.Items))
	for i, it := range v.Items {
		parts[i] = it.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if ch < 0x20 || ch == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, ch)
			} else {
				b.WriteByte(ch)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
