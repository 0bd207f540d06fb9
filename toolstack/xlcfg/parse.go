package xlcfg

import (
	"fmt"
	"strings"
)

// maxDepth bounds list nesting so that hostile input cannot exhaust the
// stack; xl's own keys nest at most two deep (vnuma).
const maxDepth = 32

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tAssign // =
	tAppend // +=
	tLBrack
	tRBrack
	tComma
	tEnd // newline or ;
)

func (k tokKind) String() string {
	return [...]string{"end of file", "name", "number", "string", "`='", "`+='", "`['", "`]'", "`,'", "end of line"}[k]
}

type token struct {
	kind tokKind
	text string // ident, number literal, or unquoted string
	pos  Pos
	semi bool // tEnd from ';' rather than a newline
}

type lexer struct {
	file      string
	src       []byte
	off       int
	line, col int
}

func (l *lexer) pos() Pos { return Pos{File: l.file, Line: l.line, Col: l.col} }

func (l *lexer) peekByte(n int) byte {
	if l.off+n < len(l.src) {
		return l.src[l.off+n]
	}
	return 0
}

func (l *lexer) advance() byte {
	ch := l.src[l.off]
	l.off++
	if ch == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	return ch
}

func isLower(ch byte) bool { return ch >= 'a' && ch <= 'z' }
func isDigit(ch byte) bool { return ch >= '0' && ch <= '9' }
func isWordByte(ch byte) bool {
	return isLower(ch) || isDigit(ch) || ch == '_' || (ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '-' || ch == '/'
}

func (l *lexer) next() (token, error) {
	for l.off < len(l.src) {
		ch := l.src[l.off]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\r':
			l.advance()
		case ch == '#':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance()
			}
		default:
			return l.token()
		}
	}
	return token{kind: tEOF, pos: l.pos()}, nil
}

func (l *lexer) token() (token, error) {
	start := l.pos()
	ch := l.src[l.off]
	single := func(k tokKind) (token, error) {
		l.advance()
		return token{kind: k, pos: start, semi: ch == ';'}, nil
	}
	switch {
	case ch == '\n' || ch == ';':
		return single(tEnd)
	case ch == '=':
		return single(tAssign)
	case ch == '[':
		return single(tLBrack)
	case ch == ']':
		return single(tRBrack)
	case ch == ',':
		return single(tComma)
	case ch == '+':
		if l.peekByte(1) == '=' {
			l.advance()
			l.advance()
			return token{kind: tAppend, pos: start}, nil
		}
		return token{}, Errorf(start, "unexpected `+'; did you mean `+='?")
	case ch == '"' || ch == '\'':
		return l.str()
	case isDigit(ch):
		return l.number()
	case isLower(ch):
		w := l.word()
		for i := 0; i < len(w); i++ {
			if c := w[i]; !isLower(c) && !isDigit(c) && c != '_' {
				return token{}, Errorf(start, "%q is not a key name: xl.cfg keys are lower-case letters, digits and `_'; a string value needs quotes", w)
			}
		}
		return token{kind: tIdent, text: w, pos: start}, nil
	case isWordByte(ch):
		w := l.word()
		return token{}, Errorf(start, "%q is not a key name or a value: keys are lower case, and string values need quotes", w)
	}
	if ch < 0x20 || ch >= 0x7f {
		return token{}, Errorf(start, "unexpected byte 0x%02x", ch)
	}
	return token{}, Errorf(start, "unexpected character %q", ch)
}

// word consumes a run of name-like bytes, so that errors can quote it.
func (l *lexer) word() string {
	s := l.off
	for l.off < len(l.src) && isWordByte(l.src[l.off]) {
		l.advance()
	}
	return string(l.src[s:l.off])
}

func (l *lexer) number() (token, error) {
	start := l.pos()
	lit := l.word()
	if _, err := parseInt(lit); err != nil {
		return token{}, Errorf(start, "%q: %v", lit, err)
	}
	return token{kind: tNumber, text: lit, pos: start}, nil
}

// parseInt reads xl's numbers: decimal, 0-prefixed octal and 0x hex, the
// forms strtol(…, 0) accepts; unlike Go's ParseInt, no 0b, 0o or `_'.
func parseInt(lit string) (int64, error) {
	base, digits := 10, lit
	switch {
	case len(lit) > 1 && lit[0] == '0' && (lit[1] == 'x' || lit[1] == 'X'):
		base, digits = 16, lit[2:]
	case len(lit) > 1 && lit[0] == '0':
		base, digits = 8, lit[1:]
	}
	if digits == "" {
		return 0, fmt.Errorf("hex number has no digits")
	}
	var n uint64
	for i := 0; i < len(digits); i++ {
		d := digitVal(digits[i])
		if d >= base {
			kind := map[int]string{8: "an octal digit (the number starts with 0)", 10: "a decimal digit", 16: "a hex digit"}[base]
			return 0, fmt.Errorf("%q is not %s", digits[i], kind)
		}
		n = n*uint64(base) + uint64(d)
		if n > 1<<63-1 {
			return 0, fmt.Errorf("number is too large")
		}
	}
	return int64(n), nil
}

func digitVal(ch byte) int {
	switch {
	case ch >= '0' && ch <= '9':
		return int(ch - '0')
	case ch >= 'a' && ch <= 'f':
		return int(ch-'a') + 10
	case ch >= 'A' && ch <= 'F':
		return int(ch-'A') + 10
	}
	return 99
}

// str reads a quoted string with libxlu's escapes: \" \' \\ \a \b \f \n
// \r \t \v, \xHH and \OOO (octal, 1-3 digits). A string may not span
// lines and may not contain NUL, which libxlu's C strings cannot hold.
func (l *lexer) str() (token, error) {
	start := l.pos()
	q := l.advance()
	var b strings.Builder
	for {
		if l.off >= len(l.src) || l.src[l.off] == '\n' {
			return token{}, Errorf(start, "string is not closed with %c before the end of the line", q)
		}
		ep := l.pos()
		ch := l.advance()
		if ch == q {
			break
		}
		if ch == 0 {
			return token{}, Errorf(ep, "NUL byte in a string")
		}
		if ch != '\\' {
			b.WriteByte(ch)
			continue
		}
		if l.off >= len(l.src) || l.src[l.off] == '\n' {
			return token{}, Errorf(ep, "backslash at the end of the line")
		}
		e := l.advance()
		switch e {
		case '"', '\'', '\\':
			b.WriteByte(e)
		case 'a':
			b.WriteByte(7)
		case 'b':
			b.WriteByte(8)
		case 'f':
			b.WriteByte(12)
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte(11)
		case 'x':
			v := 0
			for i := 0; i < 2; i++ {
				d := digitVal(l.peekByte(0))
				if l.off >= len(l.src) || d >= 16 {
					return token{}, Errorf(ep, "\\x needs two hex digits")
				}
				l.advance()
				v = v*16 + d
			}
			if v == 0 {
				return token{}, Errorf(ep, "NUL byte in a string")
			}
			b.WriteByte(byte(v))
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(e - '0')
			for i := 0; i < 2 && l.off < len(l.src) && l.src[l.off] >= '0' && l.src[l.off] <= '7'; i++ {
				v = v*8 + int(l.advance()-'0')
			}
			if v > 0xff {
				return token{}, Errorf(ep, "octal escape \\%o is larger than a byte", v)
			}
			if v == 0 {
				return token{}, Errorf(ep, "NUL byte in a string")
			}
			b.WriteByte(byte(v))
		default:
			return token{}, Errorf(ep, "unknown escape \\%c", e)
		}
	}
	return token{kind: tString, text: b.String(), pos: start}, nil
}

type parser struct {
	lx  lexer
	tok token
}

func (p *parser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) file() ([]stmt, error) {
	var out []stmt
	if err := p.advance(); err != nil {
		return nil, err
	}
	for {
		switch p.tok.kind {
		case tEOF:
			return out, nil
		case tEnd:
			if err := p.advance(); err != nil {
				return nil, err
			}
			continue
		case tIdent:
		default:
			return nil, Errorf(p.tok.pos, "expected a setting `name = value', found %s", p.tok.kind)
		}
		s := stmt{name: p.tok.text, pos: p.tok.pos}
		if err := p.advance(); err != nil {
			return nil, err
		}
		switch p.tok.kind {
		case tAssign:
		case tAppend:
			s.append = true
		default:
			return nil, Errorf(p.tok.pos, "expected `=' or `+=' after %s, found %s", s.name, p.tok.kind)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		v, err := p.value(0)
		if err != nil {
			return nil, err
		}
		s.value = v
		switch p.tok.kind {
		case tEnd, tEOF:
		default:
			return nil, Errorf(p.tok.pos, "expected the end of the setting (a newline or `;') after the value of %s, found %s", s.name, p.tok.kind)
		}
		out = append(out, s)
	}
}

// value parses one value and leaves p.tok on the token after it.
func (p *parser) value(depth int) (*Value, error) {
	t := p.tok
	switch t.kind {
	case tString:
		return &Value{Kind: String, Text: t.text, Pos: t.pos}, p.advance()
	case tNumber:
		n, _ := parseInt(t.text) // the lexer has validated it
		return &Value{Kind: Number, Text: t.text, Int: n, Pos: t.pos}, p.advance()
	case tIdent:
		return nil, Errorf(t.pos, "%q is not a value: a string value needs quotes, e.g. \"%s\"", t.text, t.text)
	case tLBrack:
	default:
		return nil, Errorf(t.pos, "expected a value (a \"string\", a number or a [list]), found %s", t.kind)
	}
	if depth >= maxDepth {
		return nil, Errorf(t.pos, "lists nest deeper than %d", maxDepth)
	}
	list := &Value{Kind: List, Pos: t.pos}
	if err := p.skipNewlines(); err != nil {
		return nil, err
	}
	for p.tok.kind != tRBrack {
		if p.tok.kind == tEOF {
			return nil, Errorf(t.pos, "list is not closed with `]'")
		}
		item, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, item)
		if err := p.skipNewlinesHere(); err != nil {
			return nil, err
		}
		switch p.tok.kind {
		case tComma:
			if err := p.skipNewlines(); err != nil {
				return nil, err
			}
		case tRBrack:
		case tEOF:
			return nil, Errorf(t.pos, "list is not closed with `]'")
		default:
			return nil, Errorf(p.tok.pos, "expected `,' or `]' in the list opened at %d:%d, found %s", t.pos.Line, t.pos.Col, p.tok.kind)
		}
	}
	return list, p.advance()
}

// skipNewlines advances past the current token and any newlines after it:
// inside a list, line breaks are layout (but `;' is still an error).
func (p *parser) skipNewlines() error {
	if err := p.advance(); err != nil {
		return err
	}
	return p.skipNewlinesHere()
}

func (p *parser) skipNewlinesHere() error {
	for p.tok.kind == tEnd && !p.tok.semi {
		if err := p.advance(); err != nil {
			return err
		}
	}
	if p.tok.kind == tEnd {
		return Errorf(p.tok.pos, "`;' inside a list")
	}
	return nil
}
