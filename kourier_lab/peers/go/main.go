// The Go net/http peer: "Hello World!" on every path, as the posts' Go server
// (its mux routes "/", a catch-all), with GOMAXPROCS from -workers and read
// and idle timeouts set.  Standard library only: it builds offline.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"time"
)

var helloWorld = []byte("Hello World!")

func hello(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", "Go")
	h.Set("Content-Type", "text/plain")
	w.Write(helloWorld)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:7080", "listen address HOST:PORT")
	workers := flag.Int("workers", 0, "GOMAXPROCS (threads running Go code); must be > 0")
	flag.Parse()
	if *workers <= 0 {
		fmt.Fprintln(os.Stderr, "peer-go: -workers N (N > 0) is required")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	mux := http.NewServeMux()
	mux.HandleFunc("/", hello)
	server := &http.Server{
		Addr:        *addr,
		Handler:     mux,
		ReadTimeout: 120 * time.Second,
		IdleTimeout: 120 * time.Second,
	}
	fmt.Printf("peer-go listening on %s with GOMAXPROCS=%d\n", *addr, *workers)
	log.Fatal(server.ListenAndServe())
}
