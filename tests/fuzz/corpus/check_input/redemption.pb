
e-5c-42АПоК"shop-1j
r-1dmug