"""The dashboard's chart pages (Overview, Costs, Quality, Operations): services and views."""
