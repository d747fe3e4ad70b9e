"""The web portal (Korean first, English beside it), served by the control plane under ``/portal``."""
