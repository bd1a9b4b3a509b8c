"""The Langfuse doors: legacy batch ingestion, scores, projects."""
