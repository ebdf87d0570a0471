// routes.go: the HTTP contract shared by supergo's example children (DESIGN.md, "Child
// protocol"), the same answers as hello-c:
//
//	GET /               -> 200 "pid: <pid>"
//	GET /hello?name=X   -> 200 "hello, X"  ("Jack" when name is absent or empty)
//	GET /sleep?ms=N     -> 200 "slept N ms", sent N ms later
//	anything else       -> 404
package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

const sleepMaxMs = 3600000

func routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// "/" is ServeMux's catch-all: only the root itself is ours.
		if r.URL.Path != "/" {
			reply(w, http.StatusNotFound, "not found")
			return
		}
		if allowed(w, r) {
			reply(w, http.StatusOK, fmt.Sprintf("pid: %d", os.Getpid()))
		}
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		q, ok := query(w, r)
		if !ok {
			return
		}
		name := q.Get("name")
		if name == "" {
			name = "Jack"
		}
		reply(w, http.StatusOK, "hello, "+name)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		q, ok := query(w, r)
		if !ok {
			return
		}
		ms, err := parseDecimal(q.Get("ms"), sleepMaxMs)
		if err != nil {
			reply(w, http.StatusBadRequest, fmt.Sprintf("sleep wants ms=N, N milliseconds up to %d", sleepMaxMs))
			return
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done(): // the client went away
			return
		}
		reply(w, http.StatusOK, fmt.Sprintf("slept %d ms", ms))
	})
	return mux
}

// allowed answers 405 unless the method is GET or HEAD.
func allowed(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	reply(w, http.StatusMethodNotAllowed, "method not allowed")
	return false
}

// query checks the method and parses the query string, answering 405 or 400 itself.
func query(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if !allowed(w, r) {
		return nil, false
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		reply(w, http.StatusBadRequest, "bad query: "+err.Error())
		return nil, false
	}
	return q, true
}

// reply sends body as text with an explicit Content-Length (HEAD gets the headers only).
// While draining, it asks to close the connection: checked here, at the end of the work,
// so that a slow request that began before the stop signal says so too.
func reply(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	if draining.Load() {
		h.Set("Connection", "close")
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}
