package bookstore

import (
	"net/http"
	"strconv"
)

// Book is what details knows about a book.
type Book struct {
	ID        int    `json:"id"`
	Title     string `json:"title"`
	Author    string `json:"author"`
	Year      int    `json:"year"`
	Type      string `json:"type"`
	Pages     int    `json:"pages"`
	Publisher string `json:"publisher"`
	Language  string `json:"language"`
	ISBN10    string `json:"isbn10"`
	ISBN13    string `json:"isbn13"`
}

// catalog is the bookstore's stock, indexed by id. The ISBNs are made up, as in bookinfo.
var catalog = []Book{
	{ID: 0, Title: "The Comedy of Errors", Author: "William Shakespeare", Year: 1595, Type: "paperback",
		Pages: 200, Publisher: "PublisherA", Language: "English", ISBN10: "1234567890", ISBN13: "123-1234567890"},
	{ID: 1, Title: "Moby-Dick", Author: "Herman Melville", Year: 1851, Type: "hardcover",
		Pages: 635, Publisher: "PublisherB", Language: "English", ISBN10: "2345678901", ISBN13: "234-2345678901"},
	{ID: 2, Title: "Pride and Prejudice", Author: "Jane Austen", Year: 1813, Type: "paperback",
		Pages: 432, Publisher: "PublisherC", Language: "English", ISBN10: "3456789012", ISBN13: "345-3456789012"},
}

// BookDetails is details' answer to GET /details/{id}.
type BookDetails struct {
	Identity
	Book
}

// BookSummary is one entry of details' list of books.
type BookSummary struct {
	ID     int    `json:"id"`
	Title  string `json:"title"`
	Author string `json:"author"`
}

// BookList is details' answer to GET /details.
type BookList struct {
	Identity
	Books []BookSummary `json:"books"`
}

// detailsService serves GET /details (every book) and GET /details/{id} (one book).
type detailsService struct {
	id Identity
}

func newDetails(id Identity) *detailsService { return &detailsService{id: id} }

func (d *detailsService) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /details", d.list)
	mux.HandleFunc("GET /details/{id}", d.book)
}

func (d *detailsService) list(w http.ResponseWriter, r *http.Request) {
	l := BookList{Identity: d.id.For(r), Books: make([]BookSummary, 0, len(catalog))}
	for _, b := range catalog {
		l.Books = append(l.Books, BookSummary{ID: b.ID, Title: b.Title, Author: b.Author})
	}
	writeJSON(w, http.StatusOK, l)
}

func (d *detailsService) book(w http.ResponseWriter, r *http.Request) {
	b, ok := lookupBook(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no book with id "+strconv.Quote(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, BookDetails{Identity: d.id.For(r), Book: b})
}

// lookupBook finds a book of the catalog by its id, given as a path segment.
func lookupBook(s string) (Book, bool) {
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= len(catalog) {
		return Book{}, false
	}
	return catalog[i], true
}

// bookID parses the book id of r's {id} path segment: a non-negative integer. Services other than
// details do not know the catalog, and answer for any id. When the segment is not an id, bookID
// answers 400 and reports false.
func bookID(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.PathValue("id")
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || strconv.Itoa(i) != s {
		writeError(w, http.StatusBadRequest, "book id "+strconv.Quote(s)+" is not a number")
		return 0, false
	}
	return i, true
}
