"""Model components: frozen encoders, connectors, fusion, the LLM decoder and the AVSR model.

One file per component (whisper.py, ct2.py, vision.py, connector.py, fusion.py, llm.py,
ctc.py, avsr.py) and one builder (builder.py) that turns the config into modules. weights.py finds
offline weight packages and the cache folder. Nothing heavy is imported here: import the
submodule you need.
"""
