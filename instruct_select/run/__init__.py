"""Where runs are made: a config's needs → producers → arms (select → train → evaluate) → results.

``pipeline`` runs a ``RunConfig``; ``arms`` is the one select → train → evaluate loop; ``stages``
the three stages; ``context`` what one command hands every stage; ``producers`` one module per
artifact a selector needs; ``ideal_rounds`` IDEAL's rounds; ``demo`` the lab demo. The methods'
floors (features/, select/, train/ ...) compute and never import from here.
"""
