package bookstore

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Messages shown by web in place of an upstream's part of the page when it fails.
const (
	DetailsUnavailable = "details unavailable"
	ReviewsUnavailable = "reviews unavailable"
)

// userCookie holds the name of the signed-in user, sent upstream as the end-user header.
const userCookie = "user"

// BookPage is everything web shows about one book; GET /api/book/{id} answers it as JSON and
// GET /book/{id} renders it as HTML. When an upstream fails, its part is absent and the matching
// *Error field says so (DetailsUnavailable, ReviewsUnavailable); the page is still a 200.
type BookPage struct {
	Identity
	ID        int    `json:"id"`
	RequestID string `json:"requestId"`
	User      string `json:"user,omitempty"`

	Details      *Book  `json:"details,omitempty"`
	DetailsError string `json:"detailsError,omitempty"`

	Reviews      []Review `json:"reviews,omitempty"`
	ReviewsError string   `json:"reviewsError,omitempty"`
	// RatingsError is set when reviews answered but could not reach ratings.
	RatingsError string `json:"ratingsError,omitempty"`

	// Versions maps each service that answered (web, details, reviews, ratings) to its version.
	Versions map[string]string `json:"versions"`
	// Callers maps each service that answered to the identity of its caller as the service's
	// sidecar verified it (absent on a plaintext hop).
	Callers callers `json:"callers,omitempty"`

	// detailsStatus is details' status when it answered other than 200 (404 for an unknown book).
	detailsStatus int
}

// webService is the frontend. It serves the HTML pages, the JSON API, and a sign-in that sets
// the end-user header of its upstream calls, as bookinfo's productpage does.
type webService struct {
	id                     Identity
	detailsURL, reviewsURL string
	up                     *upstream
	log                    *slog.Logger
}

func newWeb(id Identity, o Options, up *upstream, log *slog.Logger) *webService {
	return &webService{id: id, detailsURL: o.DetailsURL, reviewsURL: o.ReviewsURL, up: up, log: log}
}

func (s *webService) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /book/{id}", s.bookHTML)
	mux.HandleFunc("GET /productpage", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/book/0", http.StatusFound) // bookinfo's path
	})
	mux.HandleFunc("GET /api/book/{id}", s.bookJSON)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
}

// prepare gives the request an x-request-id if it came without one (no mesh in front of web),
// echoes it in the response, and returns the user and the headers to add upstream: end-user
// for a user signed in by cookie. An end-user header sent by the client wins over the cookie.
func (s *webService) prepare(w http.ResponseWriter, r *http.Request) (user string, extra http.Header) {
	rid := r.Header.Get("X-Request-Id")
	if rid == "" {
		rid = newRequestID()
		r.Header.Set("X-Request-Id", rid)
	}
	w.Header().Set("X-Request-Id", rid)
	if user = r.Header.Get("End-User"); user != "" {
		return user, nil
	}
	if c, err := r.Cookie(userCookie); err == nil && c.Value != "" {
		if u, err := url.QueryUnescape(c.Value); err == nil {
			return u, http.Header{"End-User": {u}}
		}
	}
	return "", nil
}

// page fetches a book's details and reviews concurrently and assembles its page.
func (s *webService) page(r *http.Request, id int, user string, extra http.Header) *BookPage {
	p := &BookPage{Identity: s.id.For(r), ID: id, RequestID: r.Header.Get("X-Request-Id"), User: user,
		Versions: map[string]string{s.id.Service: s.id.Version}, Callers: map[string]string{}}
	p.Callers.add(p.Identity)
	var (
		wg      sync.WaitGroup
		details BookDetails
		reviews BookReviews
		derr    error
		rerr    error
	)
	wg.Go(func() { derr = s.up.getJSON(r, extra, s.detailsURL, fmt.Sprintf("/details/%d", id), &details) })
	wg.Go(func() { rerr = s.up.getJSON(r, extra, s.reviewsURL, fmt.Sprintf("/reviews/%d", id), &reviews) })
	wg.Wait()

	if derr != nil {
		s.log.Warn("details unavailable", "err", derr, "request_id", p.RequestID)
		p.DetailsError = DetailsUnavailable
		var se *StatusError
		if errors.As(derr, &se) {
			p.detailsStatus = se.Code
		}
	} else {
		p.Details = &details.Book
		p.Versions[details.Service] = details.Version
		p.Callers.add(details.Identity)
	}
	if rerr != nil {
		s.log.Warn("reviews unavailable", "err", rerr, "request_id", p.RequestID)
		p.ReviewsError = ReviewsUnavailable
	} else {
		p.Reviews = reviews.Reviews
		p.Versions[reviews.Service] = reviews.Version
		p.Callers.add(reviews.Identity)
		if reviews.RatingsBy != nil {
			p.Versions[reviews.RatingsBy.Service] = reviews.RatingsBy.Version
			p.Callers.add(*reviews.RatingsBy)
		}
		if reviews.RatingsError != "" {
			p.RatingsError = RatingsUnavailable
		}
	}
	return p
}

// versionsHeader formats Versions for HeaderVersions: "details=v1,reviews=v2,web=v1".
func versionsHeader(v map[string]string) string {
	pairs := make([]string, 0, len(v))
	for _, k := range slices.Sorted(maps.Keys(v)) {
		pairs = append(pairs, k+"="+v[k])
	}
	return strings.Join(pairs, ",")
}

// servePage handles the common part of /book/{id} and /api/book/{id}: it parses the id, builds
// the page and picks its status (404 when details does not know the book).
func (s *webService) servePage(w http.ResponseWriter, r *http.Request) (*BookPage, int, bool) {
	user, extra := s.prepare(w, r)
	id, ok := bookID(w, r)
	if !ok {
		return nil, 0, false
	}
	p := s.page(r, id, user, extra)
	w.Header().Set(HeaderVersions, versionsHeader(p.Versions))
	if len(p.Callers) > 0 {
		w.Header().Set(HeaderCallers, versionsHeader(p.Callers))
	}
	status := http.StatusOK
	if p.detailsStatus == http.StatusNotFound {
		status = http.StatusNotFound
		p.DetailsError = "no book with id " + strconv.Itoa(id)
	}
	return p, status, true
}

func (s *webService) bookJSON(w http.ResponseWriter, r *http.Request) {
	if p, status, ok := s.servePage(w, r); ok {
		writeJSON(w, status, p)
	}
}

func (s *webService) bookHTML(w http.ResponseWriter, r *http.Request) {
	if p, status, ok := s.servePage(w, r); ok {
		renderHTML(w, status, bookTemplate, p)
	}
}

// indexPage is the data of the home page: the catalog, or why it is missing.
type indexPage struct {
	Identity
	User    string
	Books   []BookSummary
	Error   string
	Details *Identity
}

func (s *webService) index(w http.ResponseWriter, r *http.Request) {
	user, extra := s.prepare(w, r)
	p := indexPage{Identity: s.id, User: user}
	var l BookList
	if err := s.up.getJSON(r, extra, s.detailsURL, "/details", &l); err != nil {
		s.log.Warn("details unavailable", "err", err, "request_id", r.Header.Get("X-Request-Id"))
		p.Error = DetailsUnavailable
	} else {
		p.Books, p.Details = l.Books, &l.Identity
	}
	renderHTML(w, http.StatusOK, indexTemplate, p)
}

// login signs a user in: the form field "user" goes into a cookie, and from there into the
// end-user header of web's upstream calls. There is no password: this is a demo of routing by
// user, not of authentication.
func (s *webService) login(w http.ResponseWriter, r *http.Request) {
	user := strings.TrimSpace(r.FormValue("user"))
	if user == "" || len(user) > 64 {
		writeError(w, http.StatusBadRequest, "form field user: want 1 to 64 characters")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: userCookie, Value: url.QueryEscape(user), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, backTo(r), http.StatusSeeOther)
}

func (s *webService) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: userCookie, Path: "/", MaxAge: -1})
	http.Redirect(w, r, backTo(r), http.StatusSeeOther)
}

// backTo returns the local page named by the form field "back", or "/".
func backTo(r *http.Request) string {
	b := r.FormValue("back")
	if !strings.HasPrefix(b, "/") || strings.HasPrefix(b, "//") || strings.ContainsAny(b, "\\\r\n") {
		return "/"
	}
	return b
}

// callers maps a service to the identity of its caller (BookPage.Callers).
type callers map[string]string

func (c callers) add(id Identity) {
	if id.Caller != "" {
		c[id.Service] = id.Caller
	}
}
