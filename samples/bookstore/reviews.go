package bookstore

import (
	"fmt"
	"log/slog"
	"net/http"
)

// reviewsByBook holds each book's reviews. Reviewers match the keys of ratingsByBook.
var reviewsByBook = map[int][]Review{
	0: {
		{Reviewer: "Reviewer1", Text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},
		{Reviewer: "Reviewer2", Text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."},
	},
	1: {
		{Reviewer: "Reviewer1", Text: "A long voyage, and every chapter of it worth the sea-sickness."},
		{Reviewer: "Reviewer2", Text: "The whale is magnificent; the cetology chapters test one's patience."},
	},
	2: {
		{Reviewer: "Reviewer1", Text: "Witty, sharp and warm. The opening line alone is worth the price."},
		{Reviewer: "Reviewer2", Text: "Still the best romance ever written about first impressions."},
	},
}

// Review is one review of a book. Rating is absent from reviews v1.
type Review struct {
	Reviewer string  `json:"reviewer"`
	Text     string  `json:"text"`
	Rating   *Rating `json:"rating,omitempty"`
}

// Rating is the rating shown with a review: stars in a color (v2 black, v3 red), or, when ratings
// could not be reached, an error.
type Rating struct {
	Stars int    `json:"stars,omitempty"`
	Color string `json:"color,omitempty"`
	Error string `json:"error,omitempty"`
}

// RatingsUnavailable is the Rating.Error of reviews whose ratings could not be fetched.
const RatingsUnavailable = "ratings unavailable"

// BookReviews is reviews' answer to GET /reviews/{id}. RatingsBy names the ratings service that
// answered (absent for v1, which does not call it, and when ratings failed); RatingsError says
// why ratings failed.
type BookReviews struct {
	Identity
	ID           int       `json:"id"`
	Reviews      []Review  `json:"reviews"`
	RatingsBy    *Identity `json:"ratingsBy,omitempty"`
	RatingsError string    `json:"ratingsError,omitempty"`
}

// reviewsService serves GET /reviews/{id}. Its version selects the stars' color; v2 and v3 fetch
// the ratings from ratingsURL.
type reviewsService struct {
	id         Identity
	color      string // "" for v1: no stars, no call to ratings
	ratingsURL string
	up         *upstream
	log        *slog.Logger
}

func newReviews(id Identity, o Options, up *upstream, log *slog.Logger) *reviewsService {
	s := &reviewsService{id: id, ratingsURL: o.RatingsURL, up: up, log: log}
	switch o.Version {
	case "v2":
		s.color = "black"
	case "v3":
		s.color = "red"
	}
	return s
}

func (s *reviewsService) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /reviews/{id}", s.reviews)
}

func (s *reviewsService) reviews(w http.ResponseWriter, r *http.Request) {
	id, ok := bookID(w, r)
	if !ok {
		return
	}
	ans := BookReviews{Identity: s.id.For(r), ID: id, Reviews: []Review{}}
	for _, rv := range reviewsByBook[id] {
		ans.Reviews = append(ans.Reviews, Review{Reviewer: rv.Reviewer, Text: rv.Text})
	}
	if s.color != "" && len(ans.Reviews) > 0 {
		s.rate(r, &ans)
	}
	writeJSON(w, http.StatusOK, ans)
}

// rate fetches the book's ratings and attaches them to its reviews. When ratings cannot be
// reached every review says so and the answer is still a 200: reviews degrade, they do not fail.
func (s *reviewsService) rate(r *http.Request, ans *BookReviews) {
	var br BookRatings
	if err := s.up.getJSON(r, nil, s.ratingsURL, fmt.Sprintf("/ratings/%d", ans.ID), &br); err != nil {
		s.log.Warn("ratings unavailable", "err", err, "request_id", r.Header.Get("X-Request-Id"))
		ans.RatingsError = err.Error()
		for i := range ans.Reviews {
			ans.Reviews[i].Rating = &Rating{Error: RatingsUnavailable}
		}
		return
	}
	by := br.Identity
	ans.RatingsBy = &by
	for i, rv := range ans.Reviews {
		if stars, ok := br.Ratings[rv.Reviewer]; ok {
			ans.Reviews[i].Rating = &Rating{Stars: stars, Color: s.color}
		}
	}
}
