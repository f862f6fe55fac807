package emulator_test

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

func TestStartOnATakenAddressSaysTheAddressIsInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = emulator.Start(emulator.Config{AppID: appID, APIKey: apiKey}, ln.Addr().String())
	want := "the emulator cannot listen on " + ln.Addr().String() + ": the address is in use (another emulator, or another program, listens there)"
	if err == nil || err.Error() != want {
		t.Fatalf("Start on a taken address: %v, want %q", err, want)
	}
	if _, ok := errors.AsType[*emulator.ListenError](err); !ok || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("the error is not a ListenError wrapping EADDRINUSE: %#v", err)
	}
}

func TestStartOnAnAddressWithoutAPortSaysSo(t *testing.T) {
	_, err := emulator.Start(emulator.Config{AppID: appID, APIKey: apiKey}, "localhost")
	if want := "the emulator cannot listen on localhost: missing port in address"; err == nil || err.Error() != want {
		t.Fatalf("Start without a port: %v, want %q", err, want)
	}
}
