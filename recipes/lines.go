package recipes

import (
	"strconv"
	"strings"
)

// keyLines maps every key of a TOML document to the line it is written
// on, so that validation errors can say file:line. BurntSushi/toml keeps
// its own positions private, so this is a small scanner of the subset of
// TOML that recipes use: tables, arrays of tables, dotted and quoted keys,
// multi-line arrays and strings. Keys are written with array-of-table
// indices ("packages.1.sha256") and without ("packages.sha256"); the
// latter, first occurrence wins, is what toml.MetaData.Undecoded returns.
type keyLines map[string]int

func scanLines(src string) keyLines {
	kl := keyLines{}
	var table []string        // current table path, with indices
	var bare []string         // the same without indices
	count := map[string]int{} // array-of-tables occurrences
	set := func(path, barePath []string, line int) {
		k := strings.Join(path, ".")
		if _, ok := kl[k]; !ok {
			kl[k] = line
		}
		b := strings.Join(barePath, ".")
		if _, ok := kl[b]; !ok {
			kl[b] = line
		}
	}
	depth := 0 // open brackets of a multi-line value
	inML := "" // the delimiter of an open multi-line string
	for i, line := range strings.Split(src, "\n") {
		n := i + 1
		if inML != "" {
			if strings.Contains(line, inML) {
				inML = ""
			}
			continue
		}
		s := strings.TrimSpace(line)
		if depth > 0 {
			depth += bracketDelta(s)
			if depth < 0 {
				depth = 0
			}
			continue
		}
		if s == "" || s[0] == '#' {
			continue
		}
		if strings.HasPrefix(s, "[[") {
			end := strings.Index(s, "]]")
			if end < 0 {
				continue
			}
			keys := splitKey(s[2:end])
			b := strings.Join(keys, ".")
			idx := count[b]
			count[b]++
			table = append(append([]string{}, keys...), strconv.Itoa(idx))
			bare = keys
			set(table, bare, n)
			continue
		}
		if s[0] == '[' {
			end := strings.Index(s, "]")
			if end < 0 {
				continue
			}
			keys := splitKey(s[1:end])
			// A sub-table of the newest [[array]] element lives in it.
			table, bare = nil, keys
			for j := len(keys); j > 0; j-- {
				b := strings.Join(keys[:j], ".")
				if c := count[b]; c > 0 {
					table = append(append(append([]string{}, keys[:j]...), strconv.Itoa(c-1)), keys[j:]...)
					break
				}
			}
			if table == nil {
				table = keys
			}
			set(table, bare, n)
			continue
		}
		eq := keyEnd(s)
		if eq < 0 {
			continue
		}
		keys := splitKey(s[:eq])
		set(append(append([]string{}, table...), keys...), append(append([]string{}, bare...), keys...), n)
		val := strings.TrimSpace(s[eq+1:])
		for _, d := range []string{`"""`, `'''`} {
			if strings.HasPrefix(val, d) && !strings.Contains(val[3:], d) {
				inML = d
			}
		}
		if inML == "" {
			depth = bracketDelta(val)
			if depth < 0 {
				depth = 0
			}
		}
	}
	return kl
}

// keyEnd returns the index of the '=' that ends the key of a key/value
// line, or -1 if s is not one.
func keyEnd(s string) int {
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return i
		case c == '.' || c == ' ' || c == '\t' || c == '_' || c == '-' ||
			('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9'):
		default:
			return -1
		}
	}
	return -1
}

// splitKey splits a dotted key, unquoting its parts.
func splitKey(s string) []string {
	var out []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

// bracketDelta counts '[' minus ']' outside strings and comments.
func bracketDelta(s string) int {
	d := 0
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return d
		case c == '[':
			d++
		case c == ']':
			d--
		}
	}
	return d
}

// line finds the line of a key path such as "packages.1.sha256". A key
// that is missing is reported at its nearest written parent, so that "no
// sha256" points at the [[packages]] header.
func (kl keyLines) line(path string) int {
	for p := path; ; {
		if n, ok := kl[p]; ok {
			return n
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			return 1
		}
		p = p[:i]
	}
}
