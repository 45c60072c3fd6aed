"""The club's archive: resources (people and organisations articles mention), who follows
them, search, feeds and the members-only rule; the pages over it live in ``digest.web``."""
