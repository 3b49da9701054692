
e-7c-42АПоК"shop-1z(goodwillops