"""`faceparse ui page`: a web page for people — upload, drop or pick a photo, see every model stage.

The page is plain HTML + a little JavaScript (``static/``), served with the project's files only (no CDN; a
Content-Security-Policy of ``'self'`` keeps the browser from fetching anything else) by a small aiohttp
application (:mod:`faceparse.ui.app`). Where the answers come from is a *backend*
(:mod:`faceparse.ui.backends`): the models in this process (each stage's registry champion by default), or a
running endpoint (the canary router in front of TorchServe), whose ``X-Model-Version`` / ``X-Canary-Arm``
headers the page shows. The page has one card per registered stage, in registration order, each the stage's
own (its package's ``ui`` module: :mod:`faceparse.ui.cards`).
"""
