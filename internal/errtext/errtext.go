// Package errtext keeps Go internals out of the error messages people
// read. Some libraries name the Go method that failed at the start of
// their errors (kafka-go: "kafka.(*Client).Metadata: dial tcp …"); to a
// user that is noise, and the words around it already say what failed.
package errtext

import "regexp"

// goCall is a method name in Go's notation followed by ": ", as in
// "kafka.(*Client).Metadata: " or "kafka.(*Writer): ".
var goCall = regexp.MustCompile(`\b[a-z][a-z0-9]*\.\(\*?[A-Z][A-Za-z0-9]*\)(?:\.[A-Za-z0-9]+)?: `)

// Clean returns s without the Go method names in it.
func Clean(s string) string { return goCall.ReplaceAllString(s, "") }

// Plain returns err with its message cleaned; errors.Is and errors.As see
// through it to err. Nil stays nil.
func Plain(err error) error {
	if err == nil {
		return nil
	}
	msg := Clean(err.Error())
	if msg == err.Error() {
		return err
	}
	return &plain{msg: msg, err: err}
}

type plain struct {
	msg string
	err error
}

func (p *plain) Error() string { return p.msg }
func (p *plain) Unwrap() error { return p.err }
