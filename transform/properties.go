package transform

import (
	"fmt"
	"strconv"
	"time"
	_ "time/tzdata" // timezone_id is checked against IANA's zones wherever the daemon runs
	"unicode/utf8"

	"golang.org/x/text/language"
)

// checkProperty reports what is wrong with value as property name, the
// rule OneSignal's API documents for it.
func checkProperty(name, value string) error {
	switch name {
	case "language":
		// ISO 639-1: two letters, a language the registry knows.
		if b, err := language.ParseBase(value); len(value) != 2 || err != nil || b.String() != value {
			return fmt.Errorf("is not an ISO 639-1 language code (two lower-case letters, such as en or de)")
		}
	case "country":
		if r, err := language.ParseRegion(value); len(value) != 2 || err != nil || !r.IsCountry() || r.String() != value {
			return fmt.Errorf("is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as US or DE)")
		}
	case "timezone_id":
		if _, err := time.LoadLocation(value); err != nil || value == "" || value == "Local" {
			return fmt.Errorf("is not an IANA time zone (such as Europe/Berlin or America/New_York)")
		}
	case "timezone":
		n, err := strconv.Atoi(value)
		if err != nil || n < -12*3600 || n > 14*3600 {
			return fmt.Errorf("is not a time zone offset in seconds from UTC, between -43200 and 50400")
		}
	case "lat", "long":
		limit := 90.0
		if name == "long" {
			limit = 180
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || f < -limit || f > limit {
			return fmt.Errorf("is not a %s in degrees between %g and %g", map[string]string{"lat": "latitude", "long": "longitude"}[name], -limit, limit)
		}
	}
	return nil
}

// maxAlias is the longest alias OneSignal takes, in characters.
const maxAlias = 128

// checkAlias reports what is wrong with an alias's value.
func checkAlias(value string) error {
	if n := utf8.RuneCountInString(value); n > maxAlias {
		return fmt.Errorf("is %d characters long, more than the %d OneSignal takes for an alias", n, maxAlias)
	}
	return nil
}
