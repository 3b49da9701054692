
e-1c-42¿œÓ "shop-1R
o-1ÜbEUR