"""Text to token ids, exactly: the encodings (tiktoken's, with the GPT-2 ranks bundled), the
engines that run them (tiktoken, the definition of correct; gigatoken where it provably agrees),
documents cut into pieces at safe points, and the pool of workers that encodes them in order.
``tokenizer.tokenize`` is the entry point; ``tokenizer.encode`` takes strings in memory."""
