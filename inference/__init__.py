"""`pipeline.py infer`: both heads on the test photos, blended into submission.csv, plus an OOF report."""
