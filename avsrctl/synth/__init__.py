"""The synthetic corpus of `avsrctl demo-data`: GRID-grammar sentences, espeak-ng voices, rendered lower faces.

plan.py (grammar, speakers, splits) -> speech.py (words and timing) -> mouth.py (articulation)
-> face.py (frames) -> corpus.py (`generate_corpus`: render and write through data/media.py).
Only cli/demo_data.py and tools outside the product path import it (tests/test_layout.py).
"""
