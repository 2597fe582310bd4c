"""Training from passages alone: synthetic queries, LLM-written queries and the teacher."""
