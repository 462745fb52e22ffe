"""`whisper-eas serve`: OpenAI's audio transcription API, batching windows across requests."""
