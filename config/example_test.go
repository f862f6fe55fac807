package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deploy/onesignal-cdc.example.yaml says it shows every key with its
// default. It must: every key the decoder reads is there, and every value
// equals config.Default, except under a key whose comment marks it
// "required" (no default: the file holds an example) or "not the default"
// (set apart on purpose; the comment must then name the default).
func TestTheExampleConfigShowsEveryKeyWithItsDefault(t *testing.T) {
	raw, err := os.ReadFile("../deploy/onesignal-cdc.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var example Config
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&example); err != nil {
		t.Fatalf("the example does not decode: %v", err)
	}

	shown := map[string]string{} // key → the comments on it and its parents
	var walk func(n *yaml.Node, prefix, comments string)
	walk = func(n *yaml.Node, prefix, comments string) {
		if n.Kind == yaml.DocumentNode {
			walk(n.Content[0], prefix, comments)
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := prefix + k.Value
			c := comments + "\n" + k.HeadComment + " " + k.LineComment + " " + v.LineComment
			shown[key] = c
			walk(v, key+".", c)
		}
	}
	walk(&doc, "", "")

	def := Default()
	for _, key := range yamlKeys(reflect.TypeOf(Config{}), "") {
		comments, ok := shown[key]
		if !ok {
			t.Errorf("%s is missing from the example: add it, with its default and what it does", key)
			continue
		}
		lower := strings.ToLower(comments)
		if strings.Contains(lower, "required") {
			continue // an example value
		}
		want, got := lookup(reflect.ValueOf(def), key), lookup(reflect.ValueOf(example), key)
		if reflect.DeepEqual(got, want) {
			continue
		}
		if strings.Contains(lower, "not the default") {
			if !strings.Contains(comments, fmt.Sprint(want)) {
				t.Errorf("%s is set apart from its default, but its comment does not name the default %v", key, want)
			}
			continue
		}
		t.Errorf("%s is %v in the example, but its default is %v: show the default, or mark the key", key, got, want)
	}
}

// lookup returns the value of the field at the dotted yaml key below v, or
// nil when a pointer on the way is nil.
func lookup(v reflect.Value, key string) any {
	for name := range strings.SplitSeq(key, ".") {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return nil
			}
			v = v.Elem()
		}
		found := false
		for i := range v.NumField() {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return nil
		}
	}
	return v.Interface()
}
