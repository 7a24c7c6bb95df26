"""Text streams and learning at test time: documents of bytes, a small byte-level LM as the
slow model, fast learners that learn from each segment after scoring it (issue 16)."""
