"""Label shares of a set of tweets, corrected for the classifier's measured errors (quantification)."""
