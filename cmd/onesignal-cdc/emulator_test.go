package main

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestTheEmulatorOnATakenAddressSaysItIsInUseAndHowToChooseAnother(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out bytes.Buffer
	err = emulator(t.Context(), emulatorCommand(t), []string{"--listen", ln.Addr().String()}, &out)
	want := "the emulator cannot listen on " + ln.Addr().String() + ": the address is in use"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "choose another address with --listen") {
		t.Fatalf("emulator on a taken address: %v, want %q and how to choose another", err, want)
	}
	if strings.Contains(err.Error(), "onesignaltest") || strings.Contains(err.Error(), "bind:") {
		t.Errorf("the error shows Go internals: %v", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("the error does not wrap EADDRINUSE")
	}
}

func TestTheEmulatorNamesTheFlagOfAValueOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tag-limit", "-1"}, "--tag-limit -1: use 0 for no cap"},
		{[]string{"--rate-limits", "--rate-app", "-5"}, "--rate-app and --rate-target take 0"},
		{[]string{"--fault-reset", "2"}, "fault reset has share 2: use 0 to 1"},
	} {
		err := emulator(t.Context(), emulatorCommand(t), append(tc.args, "--listen", "127.0.0.1:0"), &bytes.Buffer{})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("emulator %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func emulatorCommand(t *testing.T) *command {
	t.Helper()
	cmd, _, err := lookup([]string{"emulator"})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
