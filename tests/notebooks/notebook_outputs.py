"""What an executed notebook showed: its outputs, figures and text."""


def outputs(nb):
    """Every output of the notebook's code cells, in order."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def images(nb):
    return [o for o in outputs(nb) if "image/png" in o.get("data", {})]


def text(nb):
    """Streams and plain-text results, joined."""
    return "".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")) for o in outputs(nb))
