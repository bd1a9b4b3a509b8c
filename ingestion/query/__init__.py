"""The read side of spans: query parameters, SQL selectors, response documentation."""
