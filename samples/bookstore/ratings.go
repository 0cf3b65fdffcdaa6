package bookstore

import (
	"net/http"
)

// ratingsByBook holds each book's ratings: reviewer → stars (1 to 5). A book without an entry has
// no ratings.
var ratingsByBook = map[int]map[string]int{
	0: {"Reviewer1": 5, "Reviewer2": 4},
	1: {"Reviewer1": 4, "Reviewer2": 3},
	2: {"Reviewer1": 5, "Reviewer2": 5},
}

// BookRatings is ratings' answer to GET /ratings/{id}.
type BookRatings struct {
	Identity
	ID      int            `json:"id"`
	Ratings map[string]int `json:"ratings"`
}

// ratingsService serves GET /ratings/{id}.
type ratingsService struct {
	id Identity
}

func newRatings(id Identity) *ratingsService { return &ratingsService{id: id} }

func (s *ratingsService) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ratings/{id}", s.ratings)
}

func (s *ratingsService) ratings(w http.ResponseWriter, r *http.Request) {
	id, ok := bookID(w, r)
	if !ok {
		return
	}
	rs := ratingsByBook[id]
	if rs == nil {
		rs = map[string]int{}
	}
	writeJSON(w, http.StatusOK, BookRatings{Identity: s.id.For(r), ID: id, Ratings: rs})
}
