"""Photo advice for shelters: score photos with a finished run, explain the score, suggest a crop.

Data flows one way: pawcore <- stage1 <- stage2 <- inference <- advice. Every photo goes through
`inference.Ensemble` exactly as `infer` sends the test split, so a photo scores what it would in a
submission.
"""
